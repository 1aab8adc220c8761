"""The search's results table (`trials.csv`, `trials.json`) and plot (`trials.png`).

The table is written atomically into the project folder after every trial, so a
search stopped at any point leaves a complete table of what finished; the plot
(about a second to draw) when the search ends or stops. Rows are read from the
oracle's trials, which keras-tuner keeps on disk, so a resumed search's table
includes the trials of earlier runs.

Trials are numbered from 1 wherever a person reads them (this table, `trials.json`'s
`best_trial`, the plot and the console's "trial 3/12"), while keras-tuner's own ids,
in its project files, count from 0.
"""
import csv
import io
import math
import os

from retrain.common import atomic

# Metric each trial reports besides the objective: its wall-clock seconds.
SECONDS = "trial_seconds"
FIXED_COLUMNS = ("trial", "status", "score", "seconds")
# Hyperband's hyperparameter naming the (0-based) trial a trial continues, shown 1-based.
_CONTINUES = ("tuner/trial_id", "continues_trial")


def trial_number(trial_id):
    """The 1-based number people read for keras-tuner's 0-based `trial_id`."""
    return None if trial_id is None else int(trial_id) + 1


def trial_seconds(trial):
    if trial.metrics.exists(SECONDS):
        return float(trial.metrics.get_last_value(SECONDS))
    return None


def trial_rows(oracle):
    """One dict per trial, in trial order: number, status, score, seconds, hyperparameters."""
    rows = []
    for trial_id in sorted(oracle.trials, key=int):
        trial = oracle.trials[trial_id]
        score = None if trial.score is None else float(trial.score)
        row = {"trial": trial_number(trial_id), "status": trial.status,
               "score": None if score is None or math.isnan(score) else score,
               "seconds": trial_seconds(trial)}
        row.update(trial.hyperparameters.values)
        if _CONTINUES[0] in row:
            row[_CONTINUES[1]] = trial_number(row.pop(_CONTINUES[0]))
        rows.append(row)
    return rows


def best_trial(oracle):
    """The finished trial with the best score, the earliest of equal ones (None if none).

    keras-tuner's `get_best_trials` breaks ties differently as trials are added, so the
    console said "best (trial 1)" after each trial and "best: trial 6" at the end; one
    rule here serves the progress line, the table and `--export_best`. A distributed
    worker's oracle is remote (no `trials` to read): it asks keras-tuner.
    """
    trials = getattr(oracle, "trials", None)
    if not isinstance(trials, dict):
        best = [t for t in oracle.get_best_trials(1) if t.status == "COMPLETED"]
        return best[0] if best else None
    done = [t for t in trials.values() if t.status == "COMPLETED" and t.score is not None
            and not math.isnan(float(t.score))]
    if not done:
        return None
    sign = -1 if oracle.objective.direction == "max" else 1
    return min(done, key=lambda t: (sign * float(t.score), int(t.trial_id)))


def best_trial_id(oracle):
    best = best_trial(oracle)
    return best.trial_id if best is not None else None


def columns(oracle, rows):
    names = list(FIXED_COLUMNS) + [hp.name for hp in oracle.get_space().space
                                   if hp.name != _CONTINUES[0]]
    for row in rows:
        names += [name for name in row if name not in names]
    return names


def write_results(project_dir, oracle, plot=True):
    """Write `trials.csv`, `trials.json` and (if `plot`) `trials.png`; returns the rows."""
    rows = trial_rows(oracle)
    names = columns(oracle, rows)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=names, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic.write_text(os.path.join(project_dir, "trials.csv"), text.getvalue())
    best = trial_number(best_trial_id(oracle))
    atomic.write_json(os.path.join(project_dir, "trials.json"), {
        "objective": oracle.objective.name, "direction": oracle.objective.direction,
        "best_trial": best, "columns": names, "trials": rows})
    if plot:
        plot_trials(os.path.join(project_dir, "trials.png"), rows, best, oracle.objective.name,
                    oracle.objective.direction)
    return rows


def plot_trials(path, rows, best, objective, direction):
    """Score of each finished trial, the best so far as a step line, the best starred."""
    from matplotlib.figure import Figure

    from retrain.report.figures import save_png

    done = [(r["trial"], r["score"]) for r in rows
            if r["status"] == "COMPLETED" and r["score"] is not None]
    fig = Figure(figsize=(7, 4), dpi=100)
    ax = fig.add_subplot()
    if done:
        xs, ys = zip(*done)
        ax.plot(xs, ys, "o", color="tab:blue", label="trial")
        pick = max if direction == "max" else min
        running = [pick(ys[:i + 1]) for i in range(len(ys))]
        ax.step(xs, running, where="post", color="tab:gray", alpha=0.7, label="best so far")
        if best is not None:
            score = next(r["score"] for r in rows if r["trial"] == best)
            ax.plot([best], [score], "*", color="tab:red", markersize=16,
                    label=f"best: trial {best} ({score:.4f})")
        ax.legend(loc="best", fontsize=8)
    else:
        ax.text(0.5, 0.5, "no finished trial yet", ha="center", va="center",
                transform=ax.transAxes)
    ax.set_xlabel("trial")
    ax.set_ylabel(objective)
    ax.set_title(f"{objective} by trial ({direction})")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_png(fig, path)
