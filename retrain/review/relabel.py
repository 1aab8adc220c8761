"""Going through a review's flagged pictures, and moving the ones a person chose to move.

`kapps review` writes `label_review.html` beside `label_review.json`: a page that opens
by double-click (inline CSS and script, nothing fetched; the pictures are the user's own
files, by relative path). One card per flagged picture, worst first, each with a choice:
keep it where it is (the default), move it to the likely class or to another class, or
leave it out of training. "Download decisions" saves `label_decisions.json`; the page
itself moves nothing. Then, explicitly:

    kapps review --apply label_decisions.json --image_dir DIR   # moves, logs each move
    kapps review --undo label_moves.jsonl --image_dir DIR       # moves them back

The decisions file (hand-written ones are welcome):

    {"format": "kapps-label-decisions/1", "image_dir": "pets",
     "decisions": [{"path": "cats/001.jpg", "action": "keep"},
                   {"path": "cats/002.jpg", "action": "move", "to": "dogs"},
                   {"path": "dogs/007.jpg", "action": "leave_out"}]}

`path` is relative to --image_dir (class folder first, `/` separators); `action` is
`keep`, `move` (into the class folder `to`, keeping the file name) or `leave_out`;
`image_dir` and `format` are for the reader (--image_dir is the folder acted on).
Everything is checked before the first file moves: every path exists inside --image_dir
(no absolute path, no `..`), every `to` is a class folder there (make the folder first to
start a new class), no destination exists and no two decisions name one picture. Each
move is a rename that never overwrites, appended at once to `label_moves.jsonl` in the
output folder (`{"from": "cats/002.jpg", "to": "dogs/002.jpg", "time": ...}`, one a
line); `--undo` replays that log and moves every picture it moved back to where it was
(and logs those moves too, so a second undo has nothing to do). The pictures marked
`leave_out` stay where they are and become the output folder's `label_issues.txt`, the
list `kapps retrain --drop_label_issues` leaves out. Imports neither TensorFlow nor Keras.
"""
import datetime
import html
import json
import os
import urllib.parse

from kapps.errors import UserError
from retrain.common import atomic

PAGE_FILE = "label_review.html"
DECISIONS_FILE = "label_decisions.json"
MOVES_FILE = "label_moves.jsonl"
FORMAT = "kapps-label-decisions/1"
ACTIONS = ("keep", "move", "leave_out")


def _picture_url(picture, page_dir):
    """`picture` as the page beside it in `page_dir` links it: a relative URL, or a file://
    one where no relative path exists (another drive)."""
    try:
        rel = os.path.relpath(os.path.abspath(picture), os.path.abspath(page_dir))
    except ValueError:
        from pathlib import Path

        return Path(os.path.abspath(picture)).as_uri()
    return urllib.parse.quote(rel.replace(os.sep, "/"))


def review_page(review, page_dir):
    """The HTML of `label_review.html` for `review` (what `label_review.json` holds), to be
    written into `page_dir`."""
    classes = review.get("confident_joint", {}).get("classes") or sorted(
        {f[k] for f in review["flagged"] for k in ("given_label", "likely_label")})
    esc = html.escape
    cards = []
    for f in review["flagged"]:
        others = "".join(f'<option value="{esc(c)}">{esc(c)}</option>' for c in classes
                         if c != f["given_label"])
        name = f"d{f['rank']}"
        cards.append(
            f'<div class="card" data-rank="{f["rank"]}" data-path="{esc(f["path"])}" '
            f'data-given="{esc(f["given_label"])}" data-likely="{esc(f["likely_label"])}">\n'
            f'<img src="{esc(_picture_url(os.path.join(review["image_dir"], f["path"]), page_dir))}"'
            f' alt="{esc(f["path"])}" loading="lazy">\n'
            f'<div class="info"><b>{f["rank"]}.</b> {esc(f["path"])}<br>'
            f'given <b class="given">{esc(f["given_label"])}</b>, likely '
            f'<b class="likely">{esc(f["likely_label"])}</b><br>self-confidence '
            f'<span class="conf">{f["self_confidence"]:.3f}</span></div>\n'
            f'<label><input type="radio" name="{name}" value="keep" checked> keep where it is'
            f'</label>\n<label><input type="radio" name="{name}" value="likely"> move to '
            f'{esc(f["likely_label"])}</label>\n<label><input type="radio" name="{name}" '
            f'value="other"> move to <select>{others}</select></label>\n'
            f'<label><input type="radio" name="{name}" value="leave_out"> leave out of '
            f'training</label>\n</div>')
    data = json.dumps({"format": FORMAT, "image_dir": review["image_dir"]}).replace("</", "<\\/")
    count = len(review["flagged"])
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>kapps review: {count} pictures to check</title>
<style>
body {{ font-family: sans-serif; margin: 1em; background: #fafafa; }}
#cards {{ display: flex; flex-wrap: wrap; gap: 12px; }}
.card {{ background: #fff; border: 1px solid #ccc; border-radius: 6px; padding: 8px;
        width: 220px; font-size: 13px; }}
.card img {{ width: 220px; height: 220px; object-fit: contain; background: #eee; }}
.card label {{ display: block; margin-top: 3px; }}
.given {{ color: #b00; }} .likely {{ color: #070; }}
#bar {{ position: sticky; top: 0; background: #fafafa; padding: 6px 0; }}
</style></head><body>
<h1>{count} pictures whose label is probably wrong, worst first</h1>
<p>Of {esc(review["image_dir"])}. Choose for each; nothing is moved by this page.
Download the decisions, then run
<code>kapps review --apply {DECISIONS_FILE} --image_dir {esc(review["image_dir"])}</code>
(<code>--undo {MOVES_FILE}</code> moves them back).</p>
<div id="bar"><button id="download">Download decisions ({DECISIONS_FILE})</button>
<span id="summary"></span></div>
<div id="cards">
{chr(10).join(cards)}
</div>
<script id="review-data" type="application/json">{data}</script>
<script>
const head = JSON.parse(document.getElementById("review-data").textContent);
function decisions() {{
  return Array.from(document.querySelectorAll(".card")).map(card => {{
    const choice = card.querySelector("input:checked").value;
    const d = {{path: card.dataset.path, action: choice === "leave_out" ? "leave_out" : "keep"}};
    if (choice === "likely" || choice === "other") {{
      d.action = "move";
      d.to = choice === "likely" ? card.dataset.likely : card.querySelector("select").value;
    }}
    return d;
  }});
}}
function summarise() {{
  const all = decisions(), n = a => all.filter(d => d.action === a).length;
  document.getElementById("summary").textContent =
    ` ${{n("move")}} to move, ${{n("leave_out")}} to leave out, ${{n("keep")}} to keep`;
}}
document.getElementById("cards").addEventListener("change", event => {{
  if (event.target.tagName === "SELECT")
    event.target.closest("label").querySelector("input").checked = true;
  summarise();
}});
document.getElementById("download").addEventListener("click", () => {{
  const text = JSON.stringify(Object.assign({{}}, head, {{decisions: decisions()}}), null, 1);
  const link = document.createElement("a");
  link.href = URL.createObjectURL(new Blob([text + "\\n"], {{type: "application/json"}}));
  link.download = "{DECISIONS_FILE}";
  document.body.appendChild(link);
  link.click();
  link.remove();
}});
summarise();
</script>
</body></html>
"""


def write_review_page(review, path):
    """Write `review_page(review)` to `path` atomically; returns `path`."""
    atomic.write_text(path, review_page(review, os.path.dirname(os.path.abspath(path))))
    return path


def _relative(path, image_dir, where):
    """`path` (relative to `image_dir`, `/` separators) checked to name a file inside it;
    `UserError` naming `where` otherwise."""
    if not isinstance(path, str) or not path:
        raise UserError(f"{where}: no picture path; give \"path\": \"CLASS/FILE\" relative to "
                        "--image_dir")
    parts = path.replace("\\", "/").split("/")
    if os.path.isabs(path) or path.startswith(("/", "\\")) or ".." in parts or \
            (len(path) > 1 and path[1] == ":"):
        raise UserError(f"{where}: {path} is not a path inside --image_dir {image_dir}; give "
                        "it relative to that folder, without `..`")
    full = os.path.join(image_dir, *parts)
    root = os.path.realpath(image_dir)
    if os.path.commonpath([root, os.path.realpath(full)]) != root:
        raise UserError(f"{where}: {path} leads outside --image_dir {image_dir} (a link); "
                        "move that picture by hand")
    return "/".join(p for p in parts if p not in ("", "."))


def _read_json(path, flag):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise UserError(f"{flag} {path}: cannot read it as JSON ({str(err).splitlines()[0]}); "
                        f"pass the {DECISIONS_FILE} that label_review.html downloads") from None


def read_decisions(path, image_dir):
    """The decisions of the file `path`, checked against `image_dir`: a list of
    `(path, action, to)`, paths relative to `image_dir`; `UserError` naming the file and
    the decision at the first mistake."""
    data = _read_json(path, "--apply")
    if not isinstance(data, dict) or not isinstance(data.get("decisions"), list):
        raise UserError(f"--apply {path}: no \"decisions\" list; pass the {DECISIONS_FILE} "
                        "that label_review.html downloads")
    classes = sorted(name for name in os.listdir(image_dir)
                     if os.path.isdir(os.path.join(image_dir, name)) and not name.startswith("."))
    decisions, seen = [], set()
    for number, d in enumerate(data["decisions"], 1):
        where = f"--apply {path}: decision {number}"
        if not isinstance(d, dict):
            raise UserError(f"{where} is not an object {{\"path\": ..., \"action\": ...}}")
        rel = _relative(d.get("path"), image_dir, where)
        where += f" ({rel})"
        action = d.get("action")
        if action not in ACTIONS:
            raise UserError(f"{where}: action must be one of {', '.join(ACTIONS)}. "
                            f"Received: {action!r}")
        if rel in seen:
            raise UserError(f"{where}: a second decision for the same picture; keep one")
        seen.add(rel)
        if not os.path.isfile(os.path.join(image_dir, rel)):
            raise UserError(f"{where}: no such file in --image_dir {image_dir}; was it moved "
                            "already? (label_moves.jsonl says)")
        to = d.get("to")
        if action == "move" and to not in classes:
            raise UserError(f"{where}: moves it to {to!r}, not a class folder of {image_dir} "
                            f"({', '.join(classes)}); make that folder first to start a new class")
        decisions.append((rel, action, to if action == "move" else None))
    return decisions


def _check_moves(moves, image_dir, flag):
    """`UserError` unless every `(from, to)` of `moves`, done in order, finds its source and
    never an existing destination."""
    gone, made = set(), set()
    for source, dest in moves:
        if source in gone or (source not in made and
                              not os.path.isfile(os.path.join(image_dir, source))):
            raise UserError(f"{flag}: {os.path.join(image_dir, source)} is not there; nothing "
                            "was moved")
        if dest in made or (dest not in gone and os.path.lexists(os.path.join(image_dir, dest))):
            raise UserError(f"{flag}: {os.path.join(image_dir, dest)} exists already and is "
                            f"never overwritten; rename one of the two, then run it again "
                            "(nothing was moved)")
        gone.add(source)
        made.discard(source)
        made.add(dest)
        gone.discard(dest)


def _rename_no_overwrite(source, dest):
    """Rename `source` to `dest`, failing if `dest` exists: a hard link (which refuses an
    existing name atomically) then unlinking the source; where links are not supported,
    a rename just after checking."""
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    try:
        os.link(source, dest, follow_symlinks=False)
    except FileExistsError:
        raise UserError(f"{dest} appeared meanwhile and is never overwritten; run it again")
    except OSError:
        if os.path.lexists(dest):
            raise UserError(f"{dest} appeared meanwhile and is never overwritten; run it again")
        os.rename(source, dest)
        return
    os.unlink(source)


def _move_all(moves, image_dir, log_path, kind):
    """Do `moves` in order, appending each to `log_path` as it is done; prints a line each."""
    os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
    with open(log_path, "a", encoding="utf-8") as log:
        for source, dest in moves:
            _rename_no_overwrite(os.path.join(image_dir, source), os.path.join(image_dir, dest))
            entry = {"from": source, "to": dest, "kind": kind,
                     "time": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
            log.write(json.dumps(entry, ensure_ascii=False) + "\n")
            log.flush()
            os.fsync(log.fileno())
            print(f"moved {source} -> {dest}")


def apply_decisions(path, image_dir, output_dir):
    """Carry out the decisions file `path` on `image_dir` (see the module docstring);
    returns `{"moved": [(from, to)], "left_out": [paths], "kept": count}`."""
    from retrain.common.files import LABEL_ISSUES_FILE

    decisions = read_decisions(path, image_dir)
    moves = [(rel, f"{to}/{rel.rsplit('/', 1)[-1]}") for rel, action, to in decisions
             if action == "move" and rel.split("/")[0] != to]
    _check_moves(moves, image_dir, f"--apply {path}")
    left_out = [rel for rel, action, _ in decisions if action == "leave_out"]
    log_path = os.path.join(output_dir, MOVES_FILE)
    issues_path = os.path.join(output_dir, LABEL_ISSUES_FILE)
    atomic.check_writable(output_dir, "--output_dir")
    _move_all(moves, image_dir, log_path, "apply")
    text = "\n".join(
        [f"# Pictures of {image_dir} marked 'leave out' in {path}: one a line, relative to "
         "the image folder.",
         "# kapps retrain --drop_label_issues leaves them out; delete a line to keep that "
         "picture."] + left_out) + "\n"
    earlier = _keep_earlier_list(issues_path, text)
    atomic.write_text(issues_path, text)
    kept = len(decisions) - len(moves) - len(left_out)
    print(f"{len(moves)} moved (logged in {log_path}; undo: kapps review --undo {log_path} "
          f"--image_dir {image_dir}), {len(left_out)} left out of training (in {issues_path}, "
          f"for kapps retrain --drop_label_issues" + (f"; the list it had is kept as {earlier}"
                                                      if earlier else "") + f"), {kept} kept.")
    return {"moved": moves, "left_out": left_out, "kept": kept}


def _keep_earlier_list(issues_path, text):
    """Rename a different `label_issues.txt` already at `issues_path` (the review's, or the
    user's edit of it) to a name with the time, so replacing it loses nothing; returns the
    new name, or None."""
    import time

    try:
        with open(issues_path, encoding="utf-8") as f:
            if f.read() == text:
                return None
    except FileNotFoundError:
        return None
    stem, ext = os.path.splitext(issues_path)
    stamp, n = time.strftime("%Y-%m-%dT%H-%M-%S"), 1
    kept = f"{stem}.{stamp}{ext}"
    while os.path.exists(kept):
        n += 1
        kept = f"{stem}.{stamp}-{n}{ext}"
    os.rename(issues_path, kept)
    return kept


def undo_moves(log_path, image_dir):
    """Move back every picture the log `log_path` says was moved, last move first, and log
    those moves too; returns them."""
    entries = []
    try:
        with open(log_path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if line.strip():
                    entry = json.loads(line)
                    where = f"--undo {log_path}: line {number}"
                    entries.append((_relative(entry["from"], image_dir, where),
                                    _relative(entry["to"], image_dir, where)))
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as err:
        raise UserError(f"--undo {log_path}: cannot read it ({str(err).splitlines()[0]}); pass "
                        f"the {MOVES_FILE} that kapps review --apply wrote") from None
    # Replay the log: where each picture started, where it is now, and when it last moved.
    origin, last = {}, {}
    for step, (source, dest) in enumerate(entries):
        start = origin.pop(source, source)
        origin[dest] = start
        last[dest] = step
    moves = [(now, start) for now, start in sorted(origin.items(), key=lambda kv: -last[kv[0]])
             if now != start]
    _check_moves(moves, image_dir, f"--undo {log_path}")
    _move_all(moves, image_dir, log_path, "undo")
    print(f"{len(moves)} moved back" + (f" (logged in {log_path})." if moves else
                                        ": nothing left to undo."))
    return moves
