"""Reading a `label_issues.txt` (what `kapps review` wrote, or a person edited) for
`kapps retrain --drop_label_issues`."""
import os

from kapps.errors import UserError
from retrain.common.files import LABEL_ISSUES_FILE


def read_label_issues(path, image_dir):
    """The pictures listed in `path` (a `label_issues.txt`): paths relative to `image_dir`
    (class folder first, `/` separators); `#` lines and blank lines are skipped, and an
    absolute path is taken relative to `image_dir`."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = [line.strip() for line in f]
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"--drop_label_issues {path}: cannot read it ({err}); pass the "
                        f"{LABEL_ISSUES_FILE} that kapps review wrote") from None
    paths = []
    for line in lines:
        if not line or line.startswith("#"):
            continue
        if os.path.isabs(line):
            line = os.path.relpath(line, image_dir)
        paths.append(line.replace(os.sep, "/"))
    return paths
