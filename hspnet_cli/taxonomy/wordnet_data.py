"""Getting a WordNet reader without a network: NLTK's corpus, or Debian's ``wordnet-base``.

The WordNet taxonomy builder needs WordNet 3.0. Two offline sources are tried, in order:

1. NLTK's own corpus (``python -m nltk.downloader wordnet`` puts it in an NLTK data folder).
2. The plain database files of Debian/Ubuntu's ``wordnet-base`` package in
   ``/usr/share/wordnet`` (or ``$HSPNET_WORDNET_DIR``).

NLTK cannot read the Debian folder in place: recent NLTK releases refuse corpus roots outside
the folders on ``nltk.data.path`` (and symlinks or hard links that escape them), and its reader
needs a ``lexnames`` file that the Debian package does not ship. So the files are copied once
into ``<cache>/nltk_data/corpora/wordnet/``, the standard ``lexnames`` is written next to them,
and that ``nltk_data`` folder is registered on ``nltk.data.path``. The copy is prepared in a
temporary folder and renamed into place, so a killed run never leaves half a corpus behind,
and later runs reuse it.

Also here: the intrinsic information content of every synset (``information_content``) and the
lookup of a label's words to candidate noun senses (``lookup_noun_senses``).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import nltk
import nltk.data
from nltk.corpus.reader.wordnet import WordNetCorpusReader

from hspnet_cli.core.errors import UserError

if TYPE_CHECKING:
    from nltk.corpus.reader.wordnet import Synset

DEBIAN_WORDNET_DIR = Path("/usr/share/wordnet")

INSTALL_HINT = (
    "WordNet is not installed; install it with `python -m nltk.downloader wordnet` "
    "(needs internet) or, on Debian/Ubuntu, `apt-get install wordnet-base wordnet-sense-index`"
)

# The standard WordNet 3.0 lexicographer files (see lexnames(5WN)), numbered from 00. Synsets in
# data.* refer to them by number, and NLTK reads the names from this file for Synset.lexname().
# The third column is the syntactic category: 1 noun, 2 verb, 3 adjective, 4 adverb.
_LEXNAMES = """adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body
noun.cognition noun.communication noun.event noun.feeling noun.food noun.group noun.location noun.motive
noun.object noun.person noun.phenomenon noun.plant noun.possession noun.process noun.quantity noun.relation
noun.shape noun.state noun.substance noun.time verb.body verb.change verb.cognition verb.communication
verb.competition verb.consumption verb.contact verb.creation verb.emotion verb.motion verb.perception
verb.possession verb.social verb.stative verb.weather adj.ppl""".split()
_CATEGORY = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}
LEXNAMES_TEXT = "".join(f"{i:02d}\t{name}\t{_CATEGORY[name.split('.')[0]]}\n" for i, name in enumerate(_LEXNAMES))

# Files NLTK's reader opens eagerly; without them it cannot start.
_REQUIRED_FILES = tuple(
    [f"index.{p}" for p in ("noun", "verb", "adj", "adv")]
    + [f"data.{p}" for p in ("noun", "verb", "adj", "adv")]
    + [f"{p}.exc" for p in ("noun", "verb", "adj", "adv")]
)
# Files NLTK opens only for some queries (sense keys, lemma counts); copied when present.
_OPTIONAL_FILES = ("index.sense", "cntlist.rev", "cntlist")
_MARKER = "hspnet-source.json"

_READER: WordNetCorpusReader | None = None


def cache_dir() -> Path:
    """The folder where hspnet keeps prepared data.

    Returns:
        ``$HSPNET_CACHE`` if set, else ``$XDG_CACHE_HOME/hspnet``, else ``~/.cache/hspnet``.
    """
    if os.environ.get("HSPNET_CACHE"):
        return Path(os.environ["HSPNET_CACHE"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "hspnet"
    return Path.home() / ".cache" / "hspnet"


def debian_wordnet_dir() -> Path:
    """The folder holding Debian's WordNet database files (``$HSPNET_WORDNET_DIR`` overrides)."""
    override = os.environ.get("HSPNET_WORDNET_DIR")
    return Path(override).expanduser() if override else DEBIAN_WORDNET_DIR


class _EnglishWordNet(WordNetCorpusReader):
    """NLTK's reader, without the mapping of multilingual (OMW) offsets onto WordNet 3.0."""

    def map_wn(self, version: str = "wordnet") -> dict | None:
        # NLTK maps its "wordnet" corpus onto the loaded one at start-up, reading index.sense
        # twice (1.5 s); for WordNet 3.0 that map is the identity and only OMW data uses it.
        return None if self.get_version() == "3.0" else super().map_wn(version)


def _new_reader(root: object) -> WordNetCorpusReader:
    # Without an Open Multilingual WordNet reader NLTK warns on every construction; we only
    # need English, so the warning is noise for the user.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _EnglishWordNet(root, None)


def _nltk_corpus_root() -> object | None:
    """NLTK's own WordNet folder or zip, or None when NLTK's data path has none."""
    for resource in ("corpora/wordnet", "corpora/wordnet.zip/wordnet/"):
        try:
            return nltk.data.find(resource)
        except LookupError:
            continue
    return None


def _source_signature(source: Path) -> dict[str, list[int]]:
    """Size and mtime of each source file, so a changed (upgraded) source is copied again."""
    sig: dict[str, list[int]] = {}
    for name in _REQUIRED_FILES + _OPTIONAL_FILES:
        path = source / name
        if path.is_file():
            st = path.stat()
            sig[name] = [st.st_size, int(st.st_mtime)]
    return sig


def _read_marker(corpus: Path) -> dict | None:
    try:
        return json.loads((corpus / _MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def prepare_debian_corpus(source: Path, cache: Path) -> Path:
    """Copy Debian's WordNet files into an NLTK data folder under ``cache``, once.

    Args:
        source: Folder with ``index.noun``, ``data.noun``, ... (Debian's ``/usr/share/wordnet``).
        cache: The hspnet cache folder.

    Returns:
        The ``nltk_data`` folder that holds ``corpora/wordnet``.

    Raises:
        UserError: ``source`` lacks a required file, or the cache folder cannot be written.
    """
    data_root = cache / "nltk_data"
    corpora = data_root / "corpora"
    corpus = corpora / "wordnet"
    signature = _source_signature(source)
    marker = _read_marker(corpus)
    # A folder that exists is complete (it only ever appears by rename), so it is reused as
    # long as it came from this source in this state.
    if marker is not None and marker.get("files") == signature:
        return data_root
    missing = [name for name in _REQUIRED_FILES if name not in signature]
    if missing:
        raise UserError(f"{source}: WordNet files missing ({', '.join(missing)}); {INSTALL_HINT}")
    try:
        corpora.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".wordnet.", suffix=".tmp", dir=corpora))
    except OSError as exc:
        raise UserError(
            f"{corpora}: cannot create the WordNet cache ({exc.strerror}); set HSPNET_CACHE to a writable folder"
        ) from None
    try:
        # copyfile writes plain files (never links): NLTK refuses links that leave its roots.
        for name in signature:
            shutil.copyfile(source / name, tmp / name)
        (tmp / "lexnames").write_text(LEXNAMES_TEXT, encoding="ascii")
        (tmp / _MARKER).write_text(json.dumps({"source": str(source), "files": signature}), encoding="utf-8")
        os.chmod(tmp, 0o755)
        if corpus.exists():
            # A stale copy (the source changed): move it aside first; rename cannot replace a
            # non-empty folder.
            trash = Path(tempfile.mkdtemp(prefix=".wordnet.", suffix=".old", dir=corpora))
            os.replace(corpus, trash / "wordnet")
            shutil.rmtree(trash, ignore_errors=True)
        try:
            os.rename(tmp, corpus)
        except OSError:
            # Another process finished its copy first; theirs is as good as ours.
            if not (corpus / "lexnames").is_file():
                raise
    except OSError as exc:
        raise UserError(
            f"{corpora}: cannot write the WordNet cache ({exc.strerror or exc}); set HSPNET_CACHE to a writable folder"
        ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return data_root


def _register_data_root(data_root: Path) -> None:
    # NLTK checks every file it opens against nltk.data.path, also after the reader exists
    # (data files are opened lazily), so the folder stays registered for the process.
    if str(data_root) not in [str(p) for p in nltk.data.path]:
        nltk.data.path.append(str(data_root))


def load_wordnet(cache: Path | None = None, debian_dir: Path | None = None) -> WordNetCorpusReader:
    """Build a new WordNet reader from the first source that works (not cached; see get_wordnet).

    Args:
        cache: The hspnet cache folder (default :func:`cache_dir`).
        debian_dir: Debian's WordNet folder (default :func:`debian_wordnet_dir`).

    Returns:
        A WordNet 3.0 reader.

    Raises:
        UserError: No source has WordNet; the message says how to install it.
    """
    root = _nltk_corpus_root()
    if root is not None:
        return _new_reader(root)
    cache = cache if cache is not None else cache_dir()
    source = debian_dir if debian_dir is not None else debian_wordnet_dir()
    data_root = cache / "nltk_data"
    if (source / "data.noun").is_file():
        data_root = prepare_debian_corpus(source, cache)
    elif _read_marker(data_root / "corpora" / "wordnet") is None:
        # (With the source gone, e.g. the package removed, an earlier copy is still used.)
        raise UserError(f"{INSTALL_HINT} (looked in NLTK's data path and {source})")
    _register_data_root(data_root)
    return _new_reader(str(data_root / "corpora" / "wordnet"))


def get_wordnet() -> WordNetCorpusReader:
    """The process-wide WordNet reader, built on first use (see :func:`load_wordnet`).

    Returns:
        A WordNet 3.0 reader.

    Raises:
        UserError: WordNet is not installed; the message names both ways to install it.
    """
    global _READER
    if _READER is None:
        _READER = load_wordnet()
    return _READER


def reset_wordnet_cache() -> None:
    """Forget the process-wide reader, so the next :func:`get_wordnet` looks again (tests)."""
    global _READER
    _READER = None
    _IC.clear()


_IC: dict[int, dict[tuple[str, int], float]] = {}


def information_content(wn: WordNetCorpusReader) -> dict[tuple[str, int], float]:
    """Intrinsic information content of every noun and verb synset, keyed by (pos, offset).

    IC(s) = log(N / hypo(s)) / log(N), where hypo(s) counts s and everything below it (Seco
    et al. 2004). It needs no sense-tagged corpus, and unlike depth it knows that "feline"
    (60 synsets below) is far more specific than "person" (12,000 below), though both sit at
    a similar depth. Read straight from the data files (about half a second), once per reader.

    Args:
        wn: The reader whose data files to read.

    Returns:
        (pos, offset) -> IC in [0, 1]; 1 for a synset with nothing below it.
    """
    key = id(wn)
    if key in _IC:
        return _IC[key]
    out: dict[tuple[str, int], float] = {}
    for pos, fileid in (("n", "data.noun"), ("v", "data.verb")):
        parents: dict[int, list[int]] = {}
        with wn.open(fileid) as fh:
            for line in fh:
                if line.startswith(" "):  # the licence header
                    continue
                parts = line.split()
                i = 4 + 2 * int(parts[3], 16)
                ups = []
                for j in range(int(parts[i])):
                    sym, offset = parts[i + 1 + 4 * j], parts[i + 2 + 4 * j]
                    if sym in ("@", "@i"):  # hypernym, instance hypernym
                        ups.append(int(offset))
                parents[int(parts[0])] = ups
        # Count each synset once into every ancestor's total, children before parents.
        children: dict[int, list[int]] = {}
        for node, ups in parents.items():
            for up in ups:
                children.setdefault(up, []).append(node)
        order: list[int] = []
        seen: set[int] = set()
        for root in (n for n, ups in parents.items() if not ups):
            stack = [(root, False)]
            while stack:
                node, done = stack.pop()
                if done:
                    order.append(node)
                elif node not in seen:
                    seen.add(node)
                    stack.append((node, True))
                    stack.extend((c, False) for c in children.get(node, []))
        below: dict[int, int] = {}
        for node in order:
            below[node] = 1 + sum(below[c] for c in children.get(node, []))
        total = max(below.values(), default=1)
        # A DAG sum counts shared descendants twice, so the largest total (the root) is used as
        # N; that keeps the root at 0 and leaves at 1.
        for node, count in below.items():
            out[(pos, node)] = math.log(total / count) / math.log(total) if total > 1 else 1.0
    _IC[key] = out
    return out


# A candidate sense of a label: (synset, how it was found, the WordNet lemma that matched).
Candidate = tuple["Synset", str, str]


def _nouns(wn: WordNetCorpusReader, form: str) -> tuple[list[Synset], bool]:
    """Noun synsets of ``form`` (senses of the exact lemma first) and whether it is a lemma."""
    found = wn.synsets(form, pos="n")
    exact = [s for s in found if any(lemma.name().lower() == form for lemma in s.lemmas())]
    return exact + [s for s in found if s not in exact], bool(exact)


def _mentioning(found: list[Candidate], words: list[str]) -> list[Candidate]:
    """Senses whose gloss names one of the label's other words first: "ear of corn" is the ear
    "fruiting spike of a cereal plant especially corn", not the organ of hearing."""
    words = [w for w in words if len(w) > 2 and w != "of"]
    if not words:
        return found
    pattern = re.compile(r"\b(" + "|".join(re.escape(w.rstrip("s")) for w in words) + r")s?\b")
    return sorted(found, key=lambda c: pattern.search(c[0].definition().lower()) is None)


def _split_compound(wn: WordNetCorpusReader, word: str) -> list[str] | None:
    """Split a run-together word ("diningtable") into two known words, the second a noun."""
    best: tuple[tuple[bool, int], list[str]] | None = None
    for i in range(2, len(word) - 1):
        head, tail = word[:i], word[i:]
        if not wn.synsets(head) or not wn.synsets(tail, pos="n"):
            continue
        # A split that forms a lemma ("dining_table") wins; else the most balanced one.
        key = (_nouns(wn, f"{head}_{tail}")[1], min(len(head), len(tail)))
        if best is None or key > best[0]:
            best = (key, [head, tail])
    return best[1] if best else None


def lookup_noun_senses(wn: WordNetCorpusReader, words: list[str], top: bool = True) -> list[Candidate]:
    """Candidate noun senses for a label's words, the most plausible reading first.

    Tries the words as one lemma ("traffic light" -> traffic_light, "birds" -> bird), run
    together ("wine glass" -> wineglass, with the head noun's senses as alternatives), a
    run-together word split ("diningtable" -> dining table), the head noun ("sports ball" ->
    ball, "bottle of wine" -> bottle), and for a lone adjective or verb the nouns derived from it.

    Args:
        wn: The WordNet reader.
        words: The label's words, lower case.
        top: False in recursive calls (no compound split, no derived nouns).

    Returns:
        (synset, method, lemma) candidates; empty when WordNet does not know the words. The
        method is exact, morphy, compound join, compound split, head noun or derived.
    """
    form = "_".join(words)
    # Whole-phrase lemmas, underscored or hyphenated, before any word-level guess: "ping pong" is
    # the lemma ping-pong (table tennis), while its head noun "pong" is a smell.
    for cand in dict.fromkeys([form, "-".join(words), form.replace("-", "_")]):
        found, exact = _nouns(wn, cand)
        if found:
            return [(s, "exact" if exact else "morphy", cand) for s in found]
    joined: list[Candidate] = []
    if len(words) > 1:
        # "wine glass" is a wineglass, but "blue throat" is rarely the bird bluethroat: keep
        # the head noun's senses as alternatives and let the context decide.
        joined = [(s, "compound join", "".join(words)) for s in _nouns(wn, "".join(words))[0]]
    elif top and not wn.synsets(words[0]) and (parts := _split_compound(wn, words[0])):
        split = [(s, "compound split", lemma) for s, _, lemma in lookup_noun_senses(wn, parts, top=False)]
        if split:
            return split
    tails = [words[: words.index("of", 1)]] if "of" in words[1:-1] else []  # "bottle of wine"
    tails += [words[i:] for i in range(1, len(words))]  # longest known tail first
    for tail in tails:
        found = _mentioning(lookup_noun_senses(wn, tail, top=False), [w for w in words if w not in tail])
        if found:
            return joined[:2] + [(s, "head noun", lemma) for s, _, lemma in found]
    if joined or not top or len(words) > 1:
        return joined
    # An adjective or verb label ("sunny", "swim"): the nouns derived from it.
    derived = [
        rel.synset()
        for s in wn.synsets(form)
        if s.pos() != "n"
        for lemma in s.lemmas()
        for rel in lemma.derivationally_related_forms()
        if rel.synset().pos() == "n"
    ]
    return [(s, "derived", form) for s in dict.fromkeys(derived)]
