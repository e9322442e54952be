from langchain_sac import __all__

EXPECTED_ALL = [
    "ChatSAC",
    "SACDocumentCompressor",
    "SACEmbeddings",
    "SACRetriever",
    "SACSession",
    "format_documents",
    "messages_to_prompt",
]


def test_all_imports() -> None:
    assert sorted(EXPECTED_ALL) == sorted(__all__)
