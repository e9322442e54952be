"""The demo corpus: English Wikipedia articles shipped in gensim's test data (read in place, never copied)."""

from __future__ import annotations

import bz2
import importlib.util
import re
from pathlib import Path

from sac_rag.corpus.documents import Document

_FILE = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
_CLEANUPS = [
    (re.compile(r"'{2,}"), ""),  # bold / italic quotes
    (re.compile(r"\(\s*[;,]*[;,\s]*\)"), ""),  # parentheses emptied by template removal
    (re.compile(r"\(\s*[;,][;,\s]*"), "("),  # ... or left starting with punctuation
    (re.compile(r"[ \t]+([,.;:])"), r"\1"),
    (re.compile(r"[ \t]{2,}"), " "),
    (re.compile(r"\n\s*\n(\s*\n)+"), "\n\n"),
]


def wikipedia_dump() -> Path:
    """The bz2 Wikipedia extract inside the installed gensim package."""
    spec = importlib.util.find_spec("gensim")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the demo corpus comes from gensim's test data: pip install gensim==4.4.0")
    path = Path(next(iter(spec.submodule_search_locations))) / "test" / "test_data" / _FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: reinstall gensim==4.4.0")
    return path


def clean_wikitext(markup: str) -> str:
    """Plain text of an article's wiki markup: gensim's filter_wiki, then leftover quotes and gaps removed."""
    from gensim.corpora.wikicorpus import filter_wiki

    text = filter_wiki(markup)
    for pattern, repl in _CLEANUPS:
        text = pattern.sub(repl, text)
    lines = [line.strip() for line in text.splitlines()]
    return "\n".join(line for line in lines if not line.startswith(("Category:", "File:", "Image:", "thumb|")))


def lead_section(text: str) -> str:
    """The article's introduction: everything before its first ``== heading ==``."""
    return re.split(r"^\s*=+[^=\n]+=+\s*$", text, maxsplit=1, flags=re.MULTILINE)[0].strip()


def wikipedia_articles(limit: int | None = None, min_chars: int = 400) -> list[Document]:
    """Lead sections of the articles in the dump (title in metadata), in dump order."""
    from gensim.corpora.wikicorpus import extract_pages

    docs: list[Document] = []
    with bz2.open(wikipedia_dump()) as f:
        for title, markup, page_id in extract_pages(f):
            if markup.lstrip().lower().startswith("#redirect"):
                continue
            lead = lead_section(clean_wikitext(markup))
            if len(lead) < min_chars:
                continue
            docs.append(Document(lead, f"wikipedia:{title}", {"title": title, "page_id": int(page_id)}))
            if limit is not None and len(docs) >= limit:
                break
    return docs
