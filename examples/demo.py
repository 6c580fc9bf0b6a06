"""The main job for now: build a small GPT-2 from a spec, save it, load it back, run every head.

Prints each architecture's output shapes and the parity of the reloaded model (and, when transformers is
installed, of transformers' `from_pretrained` on the same folder) against the model that was saved.
"""

import tempfile
import warnings
from pathlib import Path

import torch

import bombus
from bombus.models.gpt2 import Gpt2Spec

ARCHITECTURES = ["base", "for_causal_language_modeling", "for_sequence_classification",
                 "for_token_classification", "for_question_answering", "for_double_heads"]


def main() -> None:
    torch.manual_seed(0)
    try:
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except ImportError:
        transformers = None
    spec = Gpt2Spec(vocab_size=1000, max_positions=128, hidden_size=64, num_blocks=2, num_attention_heads=4,
                    num_labels=3, pad_token_id=0, bos_token_id=1, eos_token_id=1)
    ids = torch.randint(1, 1000, (2, 12))
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0
    print(f"{'architecture':32} {'output':14} {'shape':18} reload max|diff|  transformers max|diff|")
    for architecture in ARCHITECTURES:
        model = bombus.build_model(bombus.configure(spec, architecture=architecture))
        with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.save_pretrained(folder)
            reloaded = bombus.load_model(folder)
            inputs = dict(input_ids=ids, attention_mask=mask)
            if architecture == "for_double_heads":
                inputs = dict(input_ids=ids[:, None].expand(2, 3, 12).contiguous(), mc_token_ids=torch.full((2, 3), 11))
            with torch.no_grad():
                out, again = model(**inputs), reloaded(**inputs)
                ref = None
                if transformers is not None:
                    hf = transformers.AutoModel if architecture == "base" else getattr(
                        transformers, model.spec.to_hf_config()["architectures"][0])
                    ref = hf.from_pretrained(Path(folder)).eval()(**inputs)
        for name, value in out.items():
            if not torch.is_tensor(value):
                continue
            diff = (again[name] - value).abs().max().item()
            ref_name = "last_hidden_state" if name == "hidden_state" else name
            ref_diff = "-" if ref is None or getattr(ref, ref_name, None) is None else \
                f"{(getattr(ref, ref_name) - value).abs().max().item():.1e}"
            print(f"{architecture:32} {name:14} {str(tuple(value.shape)):18} {diff:.1e}          {ref_diff}")


if __name__ == "__main__":
    main()
