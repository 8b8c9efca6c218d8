"""The CLI and config reference of the docs, generated from the code.

Nothing here is copied by hand: the flag table comes from the absl flags
`remotetrimmer_tf.prune.define_flags` defines, the config tables from
`configs/base.py` (every field, its default, and the comment written above
or beside it) and from the recipe field table of
`remotetrimmer_tf/training/recipes.py`, the list of configs from the
docstrings of `configs/*.py`. `docs/hooks.py` calls `render()` while
`mkdocs build` reads a page, replacing markers such as
``<!-- generate: cli-flags -->``.

    python tools/docs_reference.py cli-flags     # prints one block
"""
import ast
import importlib.util
import io
import pathlib
import re
import sys
import tokenize

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MARKER = re.compile(r"<!--\s*generate:\s*([a-z-]+)\s*-->")


def _cell(text):
    return str(text).replace("|", "\\|").replace("\n", " ").strip()


def _code(value):
    if isinstance(value, (list, tuple)):
        value = ",".join(str(v) for v in value)
    return f"`{value}`" if value not in (None, "") else "—"


# ------------------------------------------------------------------ CLI flags
def cli_flags():
    """``[(name, default, help)]`` of every flag of the CLI, in definition order."""
    from absl import flags
    from remotetrimmer_tf import prune
    fv = flags.FlagValues()
    prune.define_flags(["remotetrimmer"], flag_values=fv)
    out = []
    for name, flag in fv._flags().items():   # absl's one listing of a FlagValues
        if name != flag.name:                # short names alias the same flag
            continue
        default = prune.default_config_path() if name == "config" else flag.default
        if name == "config":
            default = "configs/demo.py"
        out.append((name, default, flag.help))
    return out


def cli_flags_markdown():
    rows = ["| flag | default | meaning |", "|---|---|---|"]
    for name, default, text in cli_flags():
        rows.append(f"| `--{name}` | {_code(default)} | {_cell(text)} |")
    return "\n".join(rows)


# ------------------------------------------------------------------ the config
def _load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _base_comments(path):
    """``{"section.field": comment}`` from the assignments in get_config():
    the comment lines right above ``c.section.field = ...`` and a trailing
    comment on the same line."""
    source = path.read_text(encoding="utf-8")
    fn = next(n for n in ast.parse(source).body
              if isinstance(n, ast.FunctionDef) and n.name == "get_config")
    comments = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
    lines = source.splitlines()
    out = {}
    for i in range(fn.lineno, fn.end_lineno + 1):
        m = re.match(r"\s+c\.([a-z_]+(?:\.[a-z_]+)?)\s*=", lines[i - 1])
        if not m or m.group(1) in out:
            continue
        above, j = [], i - 1
        while j in comments and lines[j - 1].strip().startswith("#"):
            above.insert(0, comments[j])
            j -= 1
        out[m.group(1)] = " ".join(above + ([comments[i]] if i in comments else []))
    return out


def recipe_fields():
    """``{field: description}`` from the field table of training/recipes.py
    (rows ``name[, name]  text``, continuation lines indented)."""
    doc = ast.get_docstring(ast.parse(
        (ROOT / "remotetrimmer_tf" / "training" / "recipes.py").read_text()))
    rows = doc.split("\n=")[1].split("\n", 1)[1]   # after the first rule
    out, names = {}, []
    for line in rows.splitlines():
        if not line.strip() or line.startswith("="):
            continue
        m = re.match(r"^([\w*]+(?:,\s*[\w*]+)*)\s+(.*)$", line)
        if m and not line.startswith(" "):
            names = [n.strip().rstrip("*") for n in m.group(1).split(",")]
            for n in names:
                out[n] = m.group(2).strip()
        else:
            for n in names:
                out[n] += " " + line.strip()
    return {k: re.sub(r"``([^`]*)``", r"`\1`", v) for k, v in out.items()}


RECIPE_EXTRAS = {
    "steps_per_epoch": "batches per epoch (None: one pass over the training "
                       "split; a small number bounds each epoch, for smoke tests)",
    "tensorboard": "write TensorBoard logs to `<workdir>/logs/<stage>/tb` "
                   "(needs the `tensorboard` package)",
}


def field_choices():
    """``{"section.field": choices}`` from remotetrimmer_tf/choices.py."""
    from remotetrimmer_tf import choices
    return {"prune.importance": choices.BUILTIN_IMPORTANCES,
            "prune.reduction": choices.REDUCTIONS,
            "prune.round_mode": choices.ROUND_MODES, "prune.scope": choices.SCOPES,
            "prune.runtime": choices.RUNTIMES, "prune.dtype": choices.DTYPES,
            "prune.objective": choices.OBJECTIVES,
            "export.quantize": choices.QUANTIZE,
            "evaluate.split": choices.EVAL_SPLITS}


def config_sections():
    """``[(section, [(field, default, comment)])]`` of configs/base.py."""
    base_path = ROOT / "configs" / "base.py"
    base = _load(base_path, "remotetrimmer_docs_base")
    cfg = base.get_config().to_dict()
    comments = _base_comments(base_path)
    recipes = recipe_fields()
    choices = field_choices()
    out = [("top level", [])]
    for key, value in cfg.items():
        if not isinstance(value, dict):
            out[0][1].append((key, value, comments.get(key, "")))
            continue
        fields = []
        for field, default in value.items():
            text = comments.get(f"{key}.{field}", "")
            if key in ("train", "finetune"):
                text = recipes.get(field) or RECIPE_EXTRAS.get(field, text)
            if f"{key}.{field}" in choices:
                text = (f"{text.rstrip('.')}. " if text else "") + "One of " + ", ".join(
                    f"`{c}`" for c in choices[f"{key}.{field}"]) + "."
            fields.append((field, default, text))
        out.append((key, fields))
    return out


def config_markdown():
    base = _load(ROOT / "configs" / "base.py", "remotetrimmer_docs_base")
    intro = ast.get_docstring(ast.parse((ROOT / "configs" / "base.py").read_text()))
    sections = intro.split("Sections:", 1)[1].split("Example:", 1)[0]
    described, last = {}, None
    for line in sections.splitlines():
        m = re.match(r"^  (\w+)\s+(.*)$", line)
        if m:
            last = m.group(1)
            described[last] = m.group(2).strip()
        elif line.strip() and last:
            described[last] += " " + line.strip()
    blocks = []
    for section, fields in config_sections():
        title = f"### `{section}`" if section != "top level" else "### top level"
        lines = [title, ""]
        if section in described:
            lines += [described[section], ""]
        lines += ["| field | default | meaning |", "|---|---|---|"]
        prefix = "" if section == "top level" else f"{section}."
        for field, default, text in fields:
            lines.append(f"| `--config.{prefix}{field}` | {_code(default)} | "
                         f"{_cell(text) or '—'} |")
        blocks.append("\n".join(lines))
    del base
    return "\n\n".join(blocks)


def configs_markdown():
    """The config files shipped in configs/, with their docstring's first line."""
    rows = ["| config | what it runs |", "|---|---|"]
    for path in sorted((ROOT / "configs").glob("*.py")):
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        paragraphs = [" ".join(p.split()) for p in doc.split("\n\n") if p.strip()]
        text = " ".join(paragraphs[:2]) if path.stem.endswith(
            ("_published", "_modern")) else (paragraphs[0] if paragraphs else "")
        rows.append(f"| `configs/{path.name}` | {_cell(text)} |")
    return "\n".join(rows)


GENERATORS = {"cli-flags": cli_flags_markdown, "config-fields": config_markdown,
              "config-files": configs_markdown}


def render(markdown):
    """``markdown`` with every ``<!-- generate: NAME -->`` marker replaced."""
    def one(m):
        name = m.group(1)
        if name not in GENERATORS:
            raise KeyError(f"unknown docs generator {name!r}; known: "
                           f"{', '.join(sorted(GENERATORS))}")
        return GENERATORS[name]()
    return MARKER.sub(one, markdown)


if __name__ == "__main__":
    for arg in sys.argv[1:] or sorted(GENERATORS):
        print(GENERATORS[arg]())
        print()
