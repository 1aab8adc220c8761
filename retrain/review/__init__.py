"""Review: finding the pictures whose labels are probably wrong, and fixing them.

`labels` runs `kapps review` (confident learning on out-of-fold heads over the cached
features: label_review.json/png/html and label_issues.txt); `relabel` writes the review
page and applies (or undoes) what a person chose in it.

May import: retrain.common, retrain.data, retrain.report, retrain.train, retrain.config.
"""
