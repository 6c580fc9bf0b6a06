"""Task servings (Bumblebee's `Bumblebee.Text`): each is built from `(model, tokenizer[, ...], **options)` and
called on one input or a list of inputs, returning plain dicts and lists (JSON-serialisable).

    clf = bombus.text.text_classification(model, tok, top_k=2)
    clf("great film")            # {"predictions": [{"label": "POSITIVE", "score": 0.99}, ...]}
    clf(["great film", "awful"]) # a list of results

Every serving shares a runtime (`Serving`): `batch_size`, `sequence_length` (an int or bucket lengths),
`truncate`, `batch_timeout_ms`; calls from many threads at once are gathered into batches.
"""

from .chat import Chat, chat
from .fill_mask import FillMask, fill_mask
from .generation import Generation, generation
from .multiple_choice import MultipleChoice, multiple_choice
from .question_answering import QuestionAnswering, question_answering
from .serving import Request, Serving
from .text_classification import TextClassification, text_classification
from .text_embedding import SemanticSearch, TextEmbedding, embedding_options, semantic_search, text_embedding
from .token_classification import TokenClassification, token_classification
from .zero_shot_classification import ZeroShotClassification, zero_shot_classification

__all__ = [
    "Chat", "FillMask", "Generation", "MultipleChoice", "QuestionAnswering", "Request", "SemanticSearch", "Serving",
    "TextClassification", "TextEmbedding", "TokenClassification", "ZeroShotClassification", "chat",
    "embedding_options", "fill_mask", "generation", "multiple_choice", "question_answering", "semantic_search",
    "text_classification", "text_embedding", "token_classification", "zero_shot_classification",
]
