"""A language-model anchor on real human chat for preference rounds.

DPO pushes the probability of rejected replies down without a floor, and on a
135M model a few dozen steps are enough to pull the whole chat distribution
away from how people write (the drift canary's perplexity more than doubled
in our default rounds). The anchor adds, at every training step, the
next-token loss of a small batch of real human replies from the Chit-Chat
corpus (``chitchat-dataset``: people chatting with each other), weighted by
``anchor_weight``. This is the "pretraining mix" idea of PPO-ptx (Ouyang et
al. 2022) pointed at human conversation instead of web text.

The corpus is split by chat id: chats whose id hashes to the held-out tenth
are never trained on and give a second drift figure (``heldout_dialogues``);
the studio's own canary (resources/prompts/canary.jsonl) is another text
again, so neither canary is the anchor's training data.
"""

from __future__ import annotations

import functools
import hashlib
import random
from dataclasses import dataclass

from engine.errors import BadRequest

HELDOUT_SHARE = 10  # one chat in ten (by id hash) is held out


def _heldout(chat_id: str) -> bool:
    return int(hashlib.sha256(chat_id.encode()).hexdigest()[:8], 16) % HELDOUT_SHARE == 0


@functools.lru_cache(maxsize=1)
def _corpus() -> tuple:
    """The corpus's chats, parsed once per process (about a second): a round reads
    them for its anchor and again for the verdict's second canary."""
    from engine.scoring.chitchat import chitchat_chats

    return tuple(chitchat_chats())


def human_exchanges(split: str, n: int, seed: int = 0, context: int = 2,
                    max_chars: int = 300) -> list[list[dict]]:
    """``n`` chat snippets from one split ("train" or "heldout") as chat messages:
    ``context`` earlier turns (the other person as user, the replier as
    assistant), then the replier's real next message as the last assistant turn."""
    if split not in ("train", "heldout"):
        raise BadRequest("split must be train or heldout")
    chats = [c for c in _corpus() if _heldout(c[0]) == (split == "heldout")]
    rng = random.Random(seed)
    rng.shuffle(chats)
    out: list[list[dict]] = []
    for _chat_id, turns in chats:
        cuts = [k for k in range(context, len(turns))
                if turns[k][0] != turns[k - 1][0] and 0 < len(turns[k][1]) <= max_chars
                and all(len(t[1]) <= max_chars for t in turns[k - context:k])]
        if not cuts:
            continue
        k = rng.choice(cuts)
        replier = turns[k][0]
        msgs = [{"role": "assistant" if s == replier else "user", "content": t}
                for s, t in turns[k - context:k + 1]]
        while msgs and msgs[0]["role"] == "assistant":  # a chat opens with the user
            msgs.pop(0)
        if len(msgs) >= 2:
            out.append(msgs)
        if len(out) >= n:
            break
    return out


def heldout_dialogues(n: int = 60) -> list[list[dict]]:
    """Real human replies the anchor never trains on: a second drift canary."""
    return human_exchanges("heldout", n, seed=1)


@dataclass
class AnchorBatch:
    input_ids: object
    attention_mask: object
    labels: object


class Anchor:
    """Endless shuffled batches of tokenised human replies (loss on the last reply only)."""

    def __init__(self, tokenizer, n: int = 2000, batch_size: int = 4, max_length: int = 128, seed: int = 0):
        self.tok = tokenizer
        self.batch_size = max(1, int(batch_size))
        self.rng = random.Random(seed)
        self.rows = [r for r in (self._encode(m, max_length) for m in human_exchanges("train", n, seed)) if r]
        if len(self.rows) < self.batch_size:
            raise BadRequest("The human chat corpus gave too few anchor examples.")
        self.order: list[int] = []

    def _encode(self, msgs: list[dict], max_length: int):
        prefix = self.tok.apply_chat_template(msgs[:-1], add_generation_prompt=True, tokenize=False)
        p_ids = self.tok(prefix, add_special_tokens=False)["input_ids"]
        r_ids = self.tok(msgs[-1]["content"], add_special_tokens=False)["input_ids"]
        eos = self.tok.convert_tokens_to_ids("<|im_end|>")
        if isinstance(eos, int) and eos >= 0 and eos != self.tok.unk_token_id:
            r_ids = r_ids + [eos]
        keep = max_length - len(r_ids)
        if keep < 8:  # the reply alone fills the window
            return None
        p_ids = p_ids[-keep:]
        return p_ids + r_ids, [-100] * len(p_ids) + r_ids

    def next(self, device) -> AnchorBatch:
        import torch

        if len(self.order) < self.batch_size:
            self.order = list(range(len(self.rows)))
            self.rng.shuffle(self.order)
        take = [self.rows[self.order.pop()] for _ in range(self.batch_size)]
        width = max(len(ids) for ids, _ in take)
        pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else 0
        ids = torch.full((len(take), width), pad, dtype=torch.long)
        labels = torch.full((len(take), width), -100, dtype=torch.long)
        mask = torch.zeros((len(take), width), dtype=torch.long)
        for i, (row, lab) in enumerate(take):
            ids[i, :len(row)] = torch.tensor(row)
            labels[i, :len(lab)] = torch.tensor(lab)
            mask[i, :len(row)] = 1
        return AnchorBatch(ids.to(device), mask.to(device), labels.to(device))


def anchored(trainer_class):
    """``trainer_class`` with the anchor's loss added to every training loss."""

    class Anchored(trainer_class):
        def __init__(self, *args, anchor: Anchor | None = None, anchor_weight: float = 0.0, **kwargs):
            super().__init__(*args, **kwargs)
            self.anchor, self.anchor_weight = anchor, float(anchor_weight)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            out = super().compute_loss(model, inputs, return_outputs=return_outputs,
                                       num_items_in_batch=num_items_in_batch)
            if self.anchor is None or self.anchor_weight <= 0 or not model.training:
                return out
            batch = self.anchor.next(next(model.parameters()).device)
            nll = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                        labels=batch.labels).loss
            self._metrics["train"]["anchor_nll"].append(float(nll.detach()))
            if return_outputs:
                loss, outputs = out
                return loss + self.anchor_weight * nll, outputs
            return out + self.anchor_weight * nll

    Anchored.__name__ = f"Anchored{trainer_class.__name__}"
    return Anchored
