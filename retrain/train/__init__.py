"""Train: from prepared pictures to a fitted classifier.

`model` builds the base (any registry architecture, ImageNet or torchvision weights) and
the head; `prepare` scans, splits and computes the bottleneck features; `bottlenecks` is
the feature cache on disk; `linear` fits the head by L-BFGS (a convex fit on frozen
features); `fit` runs Keras' fit for everything else (fine-tuning, augmentation), on
`image_batches` of decoded pictures where the base trains.
Across machines, `cluster` reads TF_CONFIG (without TensorFlow), `multi_worker` starts
MultiWorkerMirroredStrategy and keeps Keras' fit working under it, and `feature_shares`
splits the feature pass between the workers.

May import: retrain.common, retrain.data, retrain.prediction (runtimes for the feature pass).
"""
