"""Static check: every glue key the answers page reads is glued by the chapter it names.

The answers page (``lensnb.answers``) reads the chapters' glued values by string. A renamed or dropped key would
otherwise surface only in a full book build, as a value the page reports missing. This test reads the keys from
the source (no notebook is executed): the ``G(chapter, key)`` / ``G.has(chapter, key, ...)`` calls and the
``g.get(chapter, {})`` look-ups in ``lensnb/answers.py`` and the answers notebook, against the keys each chapter's
code cells glue (``glue``, ``plotting.glue_table``, ``plotting.glue_figure``). An f-string key matches any value
of its formatted fields on either side.
"""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
GLUERS = {"glue", "glue_table", "glue_figure"}
FIELD = "\u2022"  # an f-string field in a sampled key


def _parts(node) -> list | None:
    """A key expression as literal parts and ``None`` for each f-string field; None for anything else."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        return [v.value if isinstance(v, ast.Constant) else None for v in node.values]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):  # key + "_text"
        left, right = _parts(node.left), _parts(node.right)
        return (left or [None]) + (right or [None]) if left is not None or right is not None else None
    return None


def _pattern(node) -> str | None:
    """A key expression as a regex (f-string fields -> '.+'); None for anything else."""
    parts = _parts(node)
    return None if parts is None else "".join(".+" if p is None else re.escape(p) for p in parts)


def _sample(pattern: str) -> str:
    return re.sub(r"\\(.)", r"\1", pattern.replace(".+", FIELD))


def _matches(a: str, b: str) -> bool:
    return bool(re.fullmatch(a, _sample(b)) or re.fullmatch(b, _sample(a)))


def _fills(parts: list, key: str, values: set) -> bool:
    """Whether ``key`` is ``parts`` with every field filled by one of ``values`` (the strings the chapter's code
    holds): a glued key such as f"{e}_{k}" then counts only for the values its loops can give it."""
    if not parts:
        return key == ""
    head, rest = parts[0], parts[1:]
    if head is not None:
        return key.startswith(head) and _fills(rest, key[len(head):], values)
    return any(_fills(rest, key[i:], values) for i in range(1, len(key) + 1) if _composed(key[:i], values))


def _composed(s: str, values: set) -> bool:
    """``s`` is one of ``values`` or several joined by '_' (a key built in two steps, f"{gate}_{design}")."""
    return s in values or s.isdigit() or any(s[:i] in values and _composed(s[i + 1:], values)
                              for i in range(1, len(s)) if s[i] == "_")


def _code(nb_path: Path) -> str:
    nb = json.loads(nb_path.read_text())
    cells = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    # drop IPython magics so the cells parse
    return "\n".join("\n".join(ln for ln in c.splitlines() if not ln.lstrip().startswith(("%", "!"))) for c in cells)


class Glued:
    """The keys one chapter glues: literal keys, f-string keys, and the string constants its code holds."""

    def __init__(self, nb_path: Path):
        tree = ast.parse(_code(nb_path))
        self.keys, self.values, self.library, self.library_keys = [], set(), set(), []
        for node in ast.walk(tree):  # glue(key, value) over a library function's dict: its module's strings
            if isinstance(node, ast.ImportFrom) and node.module == "lensnb":
                for a in node.names:
                    mod = ROOT / "lensnb" / f"{a.name}.py"
                    if mod.exists():
                        lib = list(ast.walk(ast.parse(mod.read_text())))
                        self.library |= {n.value for n in lib if isinstance(n, ast.Constant) and isinstance(n.value, str)}
                        self.library_keys += [p for n in lib if isinstance(n, ast.Subscript)
                                              and isinstance(n.slice, ast.JoinedStr) and (p := _parts(n.slice))]
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                self.values.add(node.value)
                self.values.add(re.sub(r"\W+", "_", node.value).strip("_"))  # keys built with re.sub(r"\W+", "_", ...)
            if isinstance(node, ast.Call) and node.args:
                f = node.func
                name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
                if name in GLUERS:
                    p = _parts(node.args[0])
                    self.keys.append(p if p is not None else [None])  # glue(key, ...): key from the code's strings

    def glues(self, key: str) -> bool:
        """Whether a key the page reads (an f-string key as a sample, fields -> ``FIELD``) can be one this chapter glues:
        literally, or an f-string key whose fields take values the chapter's code holds; an f-string key the page
        reads matches an f-string key of the same shape."""
        for p in self.keys:
            if None not in p and p[0] == key:
                return True
            if p == [None] and (key in self.values or key in self.library
                                or any(_fills(q, key, self.library) for q in self.library_keys)):
                return True
            if None in p and p != [None] and (_fills(p, key, self.values) or FIELD in key and _matches(
                    "".join(".+" if q is None else re.escape(q) for q in p), key)):
                return True
        return False


def glued_keys(nb_path: Path) -> Glued:
    return Glued(nb_path)


def read_keys(tree) -> list[tuple[str, str]]:
    """(chapter, key pattern) for every G(ch, key), G.has(ch, keys...), g.get(ch, {}).get(key) in ``tree``."""
    out = []
    alias = {}  # a = g.get("08_alternatives", {}) -> a.get(key), a[key]
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name) \
                and isinstance(node.value, ast.Call) and isinstance(node.value.func, ast.Attribute) \
                and node.value.func.attr == "get" and node.value.args \
                and isinstance(node.value.args[0], ast.Constant) \
                and re.fullmatch(r"\d\d_\w+", str(node.value.args[0].value)):
            alias[node.targets[0].id] = node.value.args[0].value
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id in alias \
                and (p := _pattern(node.slice)) is not None:
            out.append((alias[node.value.id], p))
        if not isinstance(node, ast.Call) or not node.args:
            continue
        f = node.func
        if isinstance(f, ast.Attribute) and f.attr == "get" and isinstance(f.value, ast.Name) and f.value.id in alias \
                and (p := _pattern(node.args[0])) is not None:
            out.append((alias[f.value.id], p))
            continue
        f = node.func
        if isinstance(f, ast.Name) and f.id == "G" or isinstance(f, ast.Attribute) and f.attr == "has" \
                and isinstance(f.value, ast.Name) and f.value.id == "G":
            ch = node.args[0]
            if isinstance(ch, ast.Constant) and isinstance(ch.value, str):
                keys = node.args[1:2] if isinstance(f, ast.Name) else node.args[1:]
                out += [(ch.value, p) for k in keys if (p := _pattern(k)) is not None]
        elif isinstance(f, ast.Attribute) and f.attr == "get" and isinstance(f.value, ast.Call):
            inner = f.value  # g.get("chapter", {}).get("key")
            if isinstance(inner.func, ast.Attribute) and inner.func.attr == "get" and inner.args \
                    and isinstance(inner.args[0], ast.Constant) and re.fullmatch(r"\d\d_\w+", str(inner.args[0].value)) \
                    and (p := _pattern(node.args[0])) is not None:
                out.append((inner.args[0].value, p))
    return out


def _chapter_path(chapter: str) -> Path:
    return NOTEBOOKS / f"{chapter}.ipynb"


def test_every_key_the_answers_page_reads_is_glued_by_its_chapter():
    reads = read_keys(ast.parse((ROOT / "lensnb" / "answers.py").read_text()))
    reads += read_keys(ast.parse(_code(NOTEBOOKS / "10_answers.ipynb")))
    assert len(set(reads)) >= 50, f"only {len(set(reads))} keys found: the parser missed the page's reads"
    glued, missing = {}, []
    for ch, key in sorted(set(reads)):
        path = _chapter_path(ch)
        assert path.exists(), f"the answers page reads chapter {ch!r}, which has no notebook"
        glued.setdefault(ch, Glued(path))
        if not glued[ch].glues(_sample(key)):
            missing.append(f"{ch}::{_sample(key)}")
    assert not missing, "keys the answers page reads that no chapter glues: " + ", ".join(missing)


def test_the_checker_catches_a_key_no_chapter_glues():
    tree = ast.parse('G("04_training", "E1_auroc")\nG.has("04_training", "no_such_key_anywhere")\n'
                     'g.get("03_pools", {}).get(f"core_{x}_auroc")\ng.get("metadata", {}).get("tags")\n'
                     'a = g.get("08_alternatives", {})\na.get(f"alt_{n}_label")\na["alt_ranked_names"]')
    reads = read_keys(tree)
    assert ("04_training", "E1_auroc") in reads and ("04_training", "no_such_key_anywhere") in reads
    assert ("03_pools", "core_.+_auroc") in reads and not any(ch == "metadata" for ch, _ in reads)
    assert ("08_alternatives", "alt_.+_label") in reads and ("08_alternatives", "alt_ranked_names") in reads
    ch04 = Glued(_chapter_path("04_training"))
    assert ch04.glues("E1_auroc") and ch04.glues("E3_ci_low")
    assert not ch04.glues("no_such_key_anywhere") and not ch04.glues("E9_auroc")
    assert _fills(["alt_", None, "_core"], "alt_unpaired_raw_core", {"unpaired_raw"})
    assert not _fills(["alt_", None, "_core"], "alt_unpaired_raw_core", {"unpaired"})
