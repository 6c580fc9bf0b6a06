"""bombus: pretrained transformer language models as clean, fast PyTorch, with one uniform API."""

from . import errors
from .loading import build_model, load_model, load_spec
from .model import Model
from .output import Output
from .spec import Spec, configure
from .tokenizer import Tokenizer, load_tokenizer
from .training import evaluate, train
from .generation import GenerationConfig, load_generation_config
from . import text  # noqa: E402  (task servings: bombus.text.fill_mask, ...)
