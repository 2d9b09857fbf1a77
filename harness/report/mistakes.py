"""The report's mistakes-gallery section (`crossgrad run --mistakes`): each wrong backward
formula or framework idiom failing, next to its right form passing, as measured in the run.

The entries are the gallery's (harness/teach/gallery.py): plain dicts, so this room needs
nothing above it. `crossgrad explain mistakes` shows the code of each form beside it.
"""
from ..compare.finite_diff import TOLERANCE as FD_TOLERANCE
from ..compare.pairwise import PAIRWISE
from .document import b, code
from .tables import fmt

FD = "finite differences"


def section(doc, run):
    entries = run.mistakes
    if entries is None:
        return
    doc.h(2, "Mistakes gallery")
    caught = sum(e["caught"] for e in entries)
    doc.p(b(f"{caught} of {len(entries)} mistakes caught"), ": plausible wrong backward "
          "formulas written by hand in NumPy, and framework idioms that take a wrong "
          "gradient, each measured against finite differences and every framework's "
          "gradient of the same network, weights and batch; its right form beside it must "
          f"pass (pairwise <= {PAIRWISE['float64']:g}, finite differences <= "
          f"{FD_TOLERANCE:g}). ", code("crossgrad explain mistakes"),
          " shows the code of both forms side by side.")
    doc.table(["mistake", "framework", "network", "wrong form", "right form", "caught"],
              [[code(e["name"]), e["framework"], e["network"], form_text(e["wrong"]),
                form_text(e["right"]), "PASS" if e["caught"] else "FAIL"] for e in entries],
              verdict=5)
    doc.bullets([[b(e["name"]), f": {e['title']}. {e['why']}"] for e in entries])


def form_text(form):
    """'FAIL: fin. diff. 3.9e-02 (2.b), frameworks 5.7e-02 (0.b)'."""
    if "error" in form:
        return f"FAIL: raised {form['error']}"
    parts = []
    for what, rows in (("fin. diff.", [a for a in form["against"] if a["reference"] == FD]),
                       ("frameworks", [a for a in form["against"] if a["reference"] != FD])):
        if rows:
            worst = max(rows, key=lambda a: (not a["passed"], a["rel_err"]))
            parts.append(f"{what} {fmt(worst['rel_err'])} ({worst['param']})")
    missing = f"; None for {', '.join(form['missing'])}" if form.get("missing") else ""
    return ("PASS: " if form["passed"] else "FAIL: ") + ", ".join(parts) + missing
