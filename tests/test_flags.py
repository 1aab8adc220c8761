"""Every flag of every command is checked before any work: a bad value answers with exit
status 2 and one `error:` line naming the flag, without importing TensorFlow.

The cases run in one fresh Python process where TensorFlow and Keras cannot be imported
(an attempt is recorded, and fails the case), each through the command's own
`main(argv)`; a few run the real console entry point, one process each.
"""
import json
import os
import subprocess
import sys

import pytest

from probes import BLOCK_TENSORFLOW

# Runs each case of a JSON list [[argv, cwd-relative folders...]] through `kapps.cli.main`
# and prints, per case, its exit status, its stderr and the TensorFlow/Keras modules it
# tried to import.
PROBE = r"""
import contextlib, io, json, sys
tried = []
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "keras", "keras_tuner"):
            tried.append(name)
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Block())
from kapps.cli import main
results = []
for argv in json.loads(sys.argv[1]):
    del tried[:]
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as stop:  # argparse's own mistakes
            code = stop.code
    results.append({"code": code, "err": err.getvalue(), "tried": sorted(set(tried))})
print(json.dumps(results))
"""

# (command and flags, a word the error line must hold); {images}, {model} and {file} are a
# folder of pictures, a model folder and a plain file.
RETRAIN = ["retrain", "--image_dir", "{images}"]
TUNE = ["tune", "--image_dir", "{images}"]
PREDICT = ["predict", "--model", "{model}", "{images}/a/1.png"]
EXPORT = ["export", "--model", "{model}", "--format", "litert"]
SERVE = ["serve", "--model", "{model}"]
REVIEW = ["review", "--image_dir", "{images}"]
CASES = [
    (["retrain"], "--image_dir"),
    (RETRAIN[:1] + ["--image_dir", "{images}/nothing"], "{images}/nothing"),
    (["retrain", "--demo", "cats"], "--demo"),
    (RETRAIN + ["--epochs", "0"], "--epochs"),
    (RETRAIN + ["--epochs", "many"], "--epochs"),
    (RETRAIN + ["--how_many_training_steps", "0"], "--how_many_training_steps"),
    (RETRAIN + ["--learning_rate", "-1"], "--learning_rate"),
    (RETRAIN + ["--learning_rate", "0"], "--learning_rate"),
    (RETRAIN + ["--optimizer", "adamw"], "--optimizer"),
    (RETRAIN + ["--train_batch_size", "-4"], "--train_batch_size"),
    (RETRAIN + ["--testing_percentage", "100"], "--testing_percentage"),
    (RETRAIN + ["--testing_percentage", "-1"], "--testing_percentage"),
    (RETRAIN + ["--validation_percentage", "100"], "--validation_percentage"),
    (RETRAIN + ["--testing_percentage", "50", "--validation_percentage", "50"],
     "--validation_percentage"),
    (RETRAIN + ["--random_crop", "-10"], "--random_crop"),
    (RETRAIN + ["--random_scale", "-10"], "--random_scale"),
    (RETRAIN + ["--random_brightness", "-10"], "--random_brightness"),
    (RETRAIN + ["--random_brightness", "101"], "--random_brightness"),
    (RETRAIN + ["--distorted_variants", "0"], "--distorted_variants"),
    (RETRAIN + ["--fine_tune", "some"], "--fine_tune"),
    (RETRAIN + ["--fine_tune", "top:0"], "--fine_tune"),
    (RETRAIN + ["--dropout", "1"], "--dropout"),
    (RETRAIN + ["--hidden_units", "-1"], "--hidden_units"),
    (RETRAIN + ["--label_smoothing", "-0.1"], "--label_smoothing"),
    (RETRAIN + ["--head_fit", "newton"], "--head_fit"),
    (RETRAIN + ["--head_fit", "lbfgs", "--hidden_units", "8"], "--head_fit"),
    (RETRAIN + ["--l2", "0"], "--l2"),
    # --l2 tunes the L-BFGS head fit; a run that fits by Keras would silently ignore it.
    (RETRAIN + ["--l2", "10", "--fine_tune", "top:2"], "--l2 sets the L-BFGS head fit"),
    (RETRAIN + ["--l2", "10", "--learning_rate", "0.01"], "leave out what asks for Keras"),
    (RETRAIN + ["--early_stopping", "-1"], "--early_stopping"),
    (RETRAIN + ["--warmup_epochs", "-1"], "--warmup_epochs"),
    (RETRAIN + ["--seed", "-1"], "--seed"),
    (RETRAIN + ["--runtime", "gpu"], "--runtime"),
    (RETRAIN + ["--assert_accuracy_at_least", "90"], "--assert_accuracy_at_least"),
    (RETRAIN + ["--verbose", "3"], "--verbose"),
    (RETRAIN + ["--image_size", "4"], "--image_size"),
    (RETRAIN + ["--architecture", "small_cnn", "--image_size", "4"], "--image_size"),
    (RETRAIN + ["--architecture", "resnet9000"], "--architecture"),
    (RETRAIN + ["--architecture", "small_cnn", "--weights", "imagenet"], "--weights"),
    (RETRAIN + ["--architecture", "resnet50", "--weights", "torchvision"], "--weights"),
    (RETRAIN + ["--weights", "none", "--fine_tune", "top:3"], "--fine_tune"),
    (RETRAIN + ["--weights", "{images}/no.h5"], "--weights"),
    (RETRAIN + ["--output_dir", "{file}"], "--output_dir"),
    (RETRAIN + ["--bottleneck_dir", "{file}/x"], "--bottleneck_dir"),
    (RETRAIN + ["--drop_label_issues", "{images}/label_issues.txt"], "--drop_label_issues"),
    (RETRAIN + ["--drop_label_issues", "--output_dir", "{images}"], "--drop_label_issues"),
    (RETRAIN + ["--distribute", "horovod"], "--distribute"),
    (RETRAIN + ["--distribute", "multi_worker"], "--distribute multi_worker needs the cluster"),
    (RETRAIN + ["--worker_timeout", "0"], "--worker_timeout"),
    (RETRAIN + ["--backup_dir", "{file}/x"], "--backup_dir"),
    (TUNE[:1], "--image_dir"),
    (TUNE + ["--max_trials", "0"], "--max_trials"),
    (TUNE + ["--trials_per_process", "-1"], "--trials_per_process"),
    (TUNE + ["--fit_verbose", "3"], "--fit_verbose"),
    (TUNE + ["--objective", "val_accuracy:up"], "--objective"),
    (TUNE + ["--time_budget", "soon"], "--time_budget"),
    (TUNE + ["--tuner", "annealing"], "--tuner"),
    (TUNE + ["--space", "{images}/space.json"], "space.json"),
    (TUNE + ["--epochs", "0"], "--epochs"),
    (TUNE + ["--image_size", "4"], "--image_size"),
    (TUNE + ["--seed", "-1"], "--seed"),
    (TUNE + ["--fine_tune", "some"], "--fine_tune"),
    (TUNE + ["--runtime", "gpu"], "--runtime"),
    (TUNE + ["--architecture", "small_cnn", "--weights", "imagenet"], "--weights"),
    (TUNE[:1] + ["--image_dir", "{images}/nothing"], "{images}/nothing"),
    (PREDICT + ["--top_k", "0"], "--top_k"),
    (PREDICT + ["--batch_size", "0"], "--batch_size"),
    (PREDICT + ["--threads", "0"], "--threads"),
    (PREDICT + ["--runtime", "gpu"], "--runtime"),
    (PREDICT + ["--translations", "{images}/zh.csv"], "--translations"),
    (["predict", "--model", "{images}/nothing", "{images}/a/1.png"], "--model"),
    (["predict", "{images}/a/1.png"], "--model"),
    (PREDICT + ["--explain_layer", "conv3"], "--explain_layer"),
    (PREDICT + ["--explain", "{file}/why"], "--explain {file}/why"),
    (PREDICT + ["--explain", "{images}/why", "--runtime", "litert"], "--runtime litert"),
    (PREDICT + ["--explain", "{images}/why", "--runtime", "onnx"], "--runtime onnx"),
    (EXPORT[:3] + ["--format", "tflite"], "--format"),
    (EXPORT + ["--quantize", "int4"], "--quantize"),
    (EXPORT[:3] + ["--format", "onnx", "--quantize", "int8"], "--quantize"),
    (EXPORT + ["--assert_agreement_at_least", "99"], "--assert_agreement_at_least"),
    (["export", "--model", "{images}/nothing", "--format", "litert"], "--model"),
    (["export", "--format", "tflite"], "--model"),
    (EXPORT + ["--output", "{file}/model.tflite"], "--output"),
    (SERVE + ["--port", "70000"], "--port"),
    (SERVE + ["--max_batch_size", "0"], "--max_batch_size"),
    (SERVE + ["--batch_timeout_micros", "-1"], "--batch_timeout_micros"),
    (SERVE + ["--max_upload_mb", "0"], "--max_upload_mb"),
    (SERVE + ["--threads", "0"], "--threads"),
    (SERVE + ["--runtime", "gpu"], "--runtime"),
    (SERVE + ["--translations", "{images}/zh.csv"], "--translations"),
    (["serve", "--model", "{images}/nothing"], "--model"),
    (["imagenet", "--architecture", "small_cnn"], "--architecture"),
    (["imagenet", "--architecture", "resnet9000"], "--architecture"),
    (["imagenet", "--output_dir", "{file}"], "--output_dir"),
    (["summary", "resnet9000"], "resnet9000"),
    (["summary", "lenet5", "--input_size", "3"], "--input_size"),
    (["summary", "lenet5", "--input_size", "big"], "--input_size"),
    (["models", "--everything"], "--everything"),
    (["review"], "--image_dir"),
    (["review", "--image_dir", "{images}/nothing"], "{images}/nothing"),
    (REVIEW + ["--folds", "1"], "--folds"),
    (REVIEW + ["--folds", "many"], "--folds"),
    (REVIEW + ["--rank_by", "loss"], "--rank_by"),
    (REVIEW + ["--filter_by", "all"], "--filter_by"),
    (REVIEW + ["--l2", "0"], "--l2"),
    (REVIEW + ["--weights", "none"], "--weights"),
    (REVIEW + ["--architecture", "resnet9000"], "--architecture"),
    (REVIEW + ["--image_size", "4"], "--image_size"),
    (REVIEW + ["--runtime", "gpu"], "--runtime"),
    (REVIEW + ["--output_dir", "{file}"], "--output_dir"),
    (REVIEW + ["--bottleneck_dir", "{file}/x"], "--bottleneck_dir"),
    (REVIEW + ["--apply", "{file}"], "--apply"),
    (REVIEW + ["--apply", "{images}/nothing.json"], "--apply"),
    (["review", "--apply", "{file}"], "--image_dir"),
    (REVIEW + ["--undo", "{file}"], "--undo"),
    (REVIEW + ["--undo", "{images}/nothing.jsonl"], "--undo"),
    (REVIEW + ["--apply", "{file}", "--undo", "{file}"], "--undo"),
]


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    """A folder of two classes of (unread) pictures, a model folder, a plain file."""
    root = tmp_path_factory.mktemp("flags")
    for name in ("a", "b"):
        (root / "images" / name).mkdir(parents=True)
        (root / "images" / name / "1.png").write_bytes(b"never decoded")
    (root / "model").mkdir()
    (root / "model" / "model.keras").write_bytes(b"never loaded")
    (root / "model" / "labels.txt").write_text("a\nb\n")
    (root / "file").write_text("a file, not a folder")
    return {"images": str(root / "images"), "model": str(root / "model"),
            "file": str(root / "file")}


@pytest.fixture(scope="module")
def answers(places):
    """What each case printed and returned, all run in one process without TensorFlow."""
    argvs = [[word.format(**places) for word in argv] for argv, _ in CASES]
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(argvs)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


@pytest.mark.parametrize("case", range(len(CASES)),
                         ids=[" ".join(argv).replace("{", "").replace("}", "")
                              for argv, _ in CASES])
def test_a_bad_flag_is_one_line_and_exit_2_before_tensorflow(answers, places, case):
    word = CASES[case][1].format(**places)
    answer = answers[case]
    assert answer["tried"] == [], "imported before answering: " + ", ".join(answer["tried"])
    assert answer["code"] == 2, answer["err"]
    errors = [line for line in answer["err"].splitlines() if "error:" in line]
    assert len(errors) == 1 and word in errors[0], answer["err"]
    assert "Traceback" not in answer["err"]


# The console script itself (`kapps.cli.entry`), TensorFlow blocked as above.
ENTRY = BLOCK_TENSORFLOW + r"""
import kapps.cli
sys.argv[0] = "kapps"
kapps.cli.entry()
"""


@pytest.mark.parametrize("argv, word", [
    (["retrain"], "--image_dir"),
    (["retrain", "--image_dir", "{images}", "--random_crop", "-10"], "--random_crop"),
    (["retrain", "--image_dir", "{images}", "--architecture", "small_cnn", "--weights",
      "imagenet"], "--weights"),
    (["export", "--model", "{model}", "--format", "tflite"], "--format"),
])
def test_the_console_script_answers_a_mistake_without_tensorflow(places, argv, word):
    done = subprocess.run([sys.executable, "-c", ENTRY] + [a.format(**places) for a in argv],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith("error: ") and word in line


@pytest.mark.parametrize("tf_config, word", [
    ("{not json", "TF_CONFIG is not valid JSON"),
    ('{"cluster": {"worker": ["a:1", "b:2"]}}', 'TF_CONFIG has no "task"'),
])
def test_a_bad_tf_config_answers_before_tensorflow(places, tf_config, word):
    done = subprocess.run([sys.executable, "-c", ENTRY, "retrain", "--image_dir",
                           places["images"]], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, TF_CONFIG=tf_config))
    assert done.returncode == 2 and done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith("error: ") and word in line


def test_the_rules_hold_for_python_callers_too():
    """The checks live in `RetrainConfig.check`, which `retrain()` runs first."""
    from kapps.errors import UserError
    from retrain.config import RetrainConfig

    with pytest.raises(UserError, match=r"--learning_rate must be more than 0. Received: -1"):
        RetrainConfig(image_dir="pets", learning_rate=-1).check()
    RetrainConfig(image_dir="pets", architecture="small_cnn").check()  # from scratch: fine
