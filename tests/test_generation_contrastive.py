"""Contrastive search against a straightforward re-computation (transformers 5 moved contrastive search to the
hub, so it cannot be the oracle): every step re-runs the transformers reference without a cache on the whole
sequence and on each candidate continuation, and picks
argmax_c (1 - alpha) * p(c) - alpha * max_j cos(h_c, h_j) over the real (unpadded) context tokens j."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F
from generation_fixtures import eos_mid_generation, one_thread, random_batch, tiny  # noqa: F401


def _final_hidden(ref, ids, mask):
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    out = ref(input_ids=ids, attention_mask=mask, position_ids=positions, output_hidden_states=True)
    return out.logits[:, -1].float(), out.hidden_states[-1]  # hidden_states[-1]: after the final layer norm


@torch.no_grad()
def contrastive_by_hand(ref, ids, mask, *, top_k, alpha, new_tokens, eos=None, pad=0, repetition_penalty=1.0):
    ids, mask = ids.clone(), mask.clone()
    batch = ids.shape[0]
    unfinished = torch.ones(batch, dtype=torch.bool)
    for _ in range(new_tokens):
        logits, hidden = _final_hidden(ref, ids, mask)
        if repetition_penalty != 1.0:  # transformers' penalty, padding excluded
            from transformers import RepetitionPenaltyLogitsProcessor

            logits = RepetitionPenaltyLogitsProcessor(repetition_penalty,
                                                      prompt_ignore_length=(mask != 0).int().argmax(1))(ids, logits)
        probs, candidates = logits.softmax(-1).topk(top_k, dim=-1)  # [B, k]
        chosen = []
        for b in range(batch):
            rows = ids[b].expand(top_k, -1)
            cand_ids = torch.cat([rows, candidates[b][:, None]], dim=1)
            cand_mask = torch.cat([mask[b].expand(top_k, -1), torch.ones(top_k, 1, dtype=mask.dtype)], dim=1)
            _, cand_hidden = _final_hidden(ref, cand_ids, cand_mask)
            h = cand_hidden[:, -1]  # [k, H]
            context = hidden[b][mask[b].bool()]  # [S, H]
            cos = F.normalize(h, dim=-1) @ F.normalize(context, dim=-1).T  # [k, S]
            score = (1 - alpha) * probs[b] - alpha * cos.max(dim=-1).values
            chosen.append(int(candidates[b, score.argmax()]))
        tokens = torch.tensor(chosen)
        if eos is not None:
            tokens = torch.where(unfinished, tokens, pad)
            unfinished &= tokens != eos
        ids = torch.cat([ids, tokens[:, None]], dim=1)
        mask = torch.cat([mask, torch.ones(batch, 1, dtype=mask.dtype)], dim=1)
        if eos is not None and not unfinished.any():
            break
    return ids


@pytest.mark.parametrize("seed", range(4))
def test_contrastive_search(tiny, seed):
    rng = random.Random(seed)
    ids, mask = random_batch(rng, rng.randint(1, 3), tiny.vocab_size, max_len=9)
    top_k, alpha, steps = rng.randint(2, 5), rng.choice([0.3, 0.6, 0.9]), rng.randint(3, 10)
    eos = eos_mid_generation(tiny, ids, mask, rng) if seed % 2 else None
    penalty = 1.3 if seed == 3 else 1.0
    expected = contrastive_by_hand(tiny.ref, ids, mask, top_k=top_k, alpha=alpha, new_tokens=steps, eos=eos,
                                   repetition_penalty=penalty)
    got = tiny.ours.generate(ids, attention_mask=mask, penalty_alpha=alpha, top_k=top_k, max_new_tokens=steps,
                             eos_token_id=eos, pad_token_id=0, repetition_penalty=penalty)
    assert torch.equal(got, expected), (got.tolist(), expected.tolist())


def test_contrastive_with_alpha_zero_is_greedy(tiny):
    rng = random.Random(1)
    ids, mask = random_batch(rng, 3, tiny.vocab_size)
    greedy = tiny.ours.generate(ids, attention_mask=mask, max_new_tokens=8, pad_token_id=0)
    contrastive = tiny.ours.generate(ids, attention_mask=mask, max_new_tokens=8, pad_token_id=0, penalty_alpha=1e-9,
                                     top_k=4)
    assert torch.equal(greedy, contrastive)
    # ... and a strong penalty changes the output (the test above cannot pass by ignoring alpha).
    strong = tiny.ours.generate(ids, attention_mask=mask, max_new_tokens=8, pad_token_id=0, penalty_alpha=0.9, top_k=4)
    assert not torch.equal(greedy, strong)
