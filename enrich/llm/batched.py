"""Continuous batching for the embedded model: many chat requests decoded together in one
llama.cpp context, each with its own JSON grammar, the shared prompt prefix computed once.

On a CPU, prompt processing is the bottleneck of short structured answers, and it is far cheaper
per token in a batch than one request at a time; the system turn every request shares is decoded
once and copied (``llama_memory_seq_cp``) into each sequence. Sequences join as slots free up
(continuous batching), so a long answer does not hold the others back.

Each sequence has a KV stream of its own, and llama.cpp splits a batch into one graph run per
run of *consecutive* sequence ids in batch order (``split_equal(sequential=True)``). So the batch
lists sequences by slot and new requests take the lowest free slot: a full batch is one graph run.
(Unsorted, it fell apart into ever more runs as slots were reused: a full step went from 150 to
285 ms within 64 requests. Moving the last sequences down into the gaps finished ones leave, a
copy of the whole stream each, was tried and measured no faster.)

Sampling is greedy with llama.cpp's repeat penalty, then the grammar: the greedy token is checked
alone against the sequence's grammar and the whole vocabulary is filtered only when it is
rejected (a few percent of tokens). The chosen token is therefore exactly the one the full
``penalties -> grammar -> greedy`` chain of ``create_chat_completion`` picks from the same logits.

Example:
    >>> decoder = BatchDecoder(llama, n_seq=8)  # doctest: +SKIP
    >>> futures = [decoder.submit(t, prefix_len=40, grammar=g) for t in prompts]  # doctest: +SKIP
    >>> [f.result().text for f in futures]  # doctest: +SKIP
"""

from __future__ import annotations

import ctypes
import heapq
import json
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import llama_cpp as lc
import numpy as np

from enrich.errors import EnrichError

MIN_SHARED_PREFIX = 8
"""Shorter common prefixes are decoded with the rest of the prompt (a copy costs more)."""

TOP_K = (64, 2048)
"""Candidates checked against the grammar when the greedy token is not allowed: the 64 best,
then the 2,048 best, then the whole vocabulary. Among the tokens the 64 best did not settle,
the 2,048 best held the grammar's choice 61% of the time (48 ML-100K items, 270 such tokens),
for ~0.6 ms against the whole vocabulary's 4-8 ms."""

_CANDIDATE = np.dtype([("id", np.intc), ("logit", np.float32), ("p", np.float32)], align=True)


@dataclass
class Completion:
    """What one sequence produced."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    """``stop`` (end of generation) or ``length`` (hit ``max_tokens``: the answer is cut)."""


@dataclass
class DecodeStats:
    """Counters since the decoder was made (for benchmarks and logs)."""

    prompt_tokens: int = 0
    """Prompt tokens decoded (shared prefixes count once)."""
    shared_tokens: int = 0
    """Prompt tokens copied from the shared prefix instead of decoded."""
    completion_tokens: int = 0
    """Tokens generated (end-of-generation tokens not counted)."""
    decode_calls: int = 0
    grammar_fallbacks: int = 0
    """Tokens for which the greedy choice broke the grammar (the next best were checked)."""
    grammar_wide_scans: int = 0
    """Fallbacks the 64 best did not settle (the 2,048 best were checked)."""
    grammar_full_scans: int = 0
    """Fallbacks that had to filter the whole vocabulary."""
    decode_seconds: float = 0.0
    """Inside ``llama_decode`` (the model itself)."""
    sample_seconds: float = 0.0
    """Repeat penalty, greedy choice and grammar checks."""
    step_seconds: float = 0.0
    """Whole steps: decode + sample + the Python around them (batch filling, admission)."""
    steps: int = 0
    sequence_steps: int = 0
    """Sequences running summed over steps (``/ steps``: the mean batch occupancy)."""


@dataclass
class _Request:
    tokens: list[int]
    prefix_len: int
    grammar: str | None
    max_tokens: int
    future: Future[Completion] = field(default_factory=Future)


@dataclass
class _Sequence:
    request: _Request
    slot: int
    grammar: Any  # llama_sampler_p or None
    pos: int = 0
    generated: list[int] = field(default_factory=list)
    output_index: int = -1


MAX_INT_CHOICES = 101
"""Integer ranges up to this many values become a choice in the grammar (see below)."""


@lru_cache(maxsize=32)
def grammar_for_schema(schema_json: str) -> str:
    """GBNF for a JSON schema, as llama-cpp-python's ``response_format`` builds it, except that
    a bounded integer (``minimum``..``maximum``, at most ``MAX_INT_CHOICES`` values) becomes a
    choice among its values: llama.cpp's converter ignores integer bounds, so a 1-5 scale would
    otherwise admit 0, 7 or 1999.

    >>> print(grammar_for_schema('{"type": "integer", "minimum": 1, "maximum": 3}'))
    root ::= "1" | "2" | "3"
    space ::= " "?
    """
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    return json_schema_to_gbnf(json.dumps(_bounded_ints_as_enums(json.loads(schema_json))))


def _bounded_ints_as_enums(node: Any) -> Any:
    if isinstance(node, list):
        return [_bounded_ints_as_enums(n) for n in node]
    if not isinstance(node, dict):
        return node
    node = {k: _bounded_ints_as_enums(v) for k, v in node.items()}
    if node.get("type") != "integer":
        return node

    def number(key: str) -> float | None:
        value = node.get(key)  # draft-4 booleans (exclusiveMinimum: true) are not bounds here
        return (
            float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
        )

    lows = [math.ceil(v) for v in (number("minimum"),) if v is not None]
    lows += [math.floor(v) + 1 for v in (number("exclusiveMinimum"),) if v is not None]
    highs = [math.floor(v) for v in (number("maximum"),) if v is not None]
    highs += [math.ceil(v) - 1 for v in (number("exclusiveMaximum"),) if v is not None]
    if lows and highs and 0 < min(highs) - max(lows) + 1 <= MAX_INT_CHOICES:
        return {"enum": list(range(max(lows), min(highs) + 1))}
    return node


class BatchDecoder:
    """Decodes up to ``n_seq`` requests at once in a context of its own on ``llama``'s model.

    ``submit`` is thread-safe and returns a future; the decoding loop runs on ``run_on`` (a
    callable that schedules work on the one thread allowed to touch llama.cpp), started when work
    arrives and ended when none is left.

    Args:
        llama: a loaded ``llama_cpp.Llama`` (its model and tokenizer are shared, not copied).
        n_seq: sequences decoded together.
        n_ctx_seq: context of each sequence (prompt + answer); longer requests are refused.
        n_threads: CPU threads for decoding.
        repeat_penalty: llama.cpp's repeat penalty over the last ``penalty_last_n`` tokens.
        flash_attn: flash attention (off by default: see ``ChatEmbedded.flash_attn``).
        run_on: schedules the decoding loop; default: a new thread per busy period.
    """

    def __init__(
        self,
        llama: Any,
        n_seq: int = 16,
        n_ctx_seq: int = 2048,
        n_threads: int = 2,
        repeat_penalty: float = 1.15,
        penalty_last_n: int = 64,
        flash_attn: bool = False,
        run_on: Callable[[Callable[[], None]], Any] | None = None,
    ) -> None:
        if n_seq < 1:
            raise EnrichError(f"n_seq must be at least 1, not {n_seq}")
        self.llama = llama
        self.n_seq = n_seq
        self.n_ctx_seq = n_ctx_seq
        self.repeat_penalty = repeat_penalty
        self.penalty_last_n = penalty_last_n
        self._run_on = run_on or (lambda fn: threading.Thread(target=fn, daemon=True).start())
        model = llama._model.model
        self._vocab = lc.llama_model_get_vocab(model)
        self.n_vocab = lc.llama_vocab_n_tokens(self._vocab)
        params = lc.llama_context_default_params()
        params.n_seq_max = n_seq + 1  # sequence 0 holds the shared prefix
        params.n_ctx = (n_seq + 1) * n_ctx_seq
        params.n_batch = n_ctx_seq + n_seq  # one whole prompt plus one token per other sequence
        params.n_ubatch = 512
        params.n_threads = params.n_threads_batch = n_threads
        params.kv_unified = False  # a stream per sequence: attention only over its own tokens
        params.flash_attn_type = (
            lc.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash_attn else lc.LLAMA_FLASH_ATTN_TYPE_DISABLED
        )
        params.no_perf = True
        self._ctx = lc.llama_init_from_model(model, params)
        if not self._ctx:
            raise EnrichError(
                f"llama.cpp could not create a context for {n_seq} sequences of {n_ctx_seq} "
                "tokens; lower n_parallel or n_ctx"
            )
        self._mem = lc.llama_get_memory(self._ctx)
        self.n_batch = params.n_batch
        self._batch = lc.llama_batch_init(self.n_batch, 0, 1)
        self._prefix_batch = lc.llama_batch_init(self.n_batch, 0, 1)
        self._candidates = np.zeros(self.n_vocab, dtype=_CANDIDATE)
        self._candidates["id"] = np.arange(self.n_vocab, dtype=np.intc)
        self._prefix: list[int] = []
        self._queue: deque[_Request] = deque()
        self._lock = threading.Lock()
        self._running = False
        self._closed = False
        self.stats = DecodeStats()

    # -- public -----------------------------------------------------------------------------------

    def submit(
        self,
        tokens: list[int],
        *,
        prefix_len: int = 0,
        grammar: str | None = None,
        max_tokens: int = 200,
    ) -> Future[Completion]:
        """Queue one prompt (token ids); ``prefix_len`` leading tokens are shared by others."""
        request = _Request(list(tokens), prefix_len, grammar, max_tokens)
        if not tokens:
            request.future.set_exception(EnrichError("empty prompt"))
            return request.future
        if len(tokens) + max_tokens > self.n_ctx_seq:
            request.future.set_exception(
                EnrichError(
                    f"prompt of {len(tokens)} tokens + max_tokens {max_tokens} exceeds the "
                    f"{self.n_ctx_seq}-token context of a sequence; shorten the text or raise "
                    "n_ctx"
                )
            )
            return request.future
        with self._lock:
            if self._closed:
                raise EnrichError("the decoder is closed")
            self._queue.append(request)
            start = not self._running
            self._running = True
        if start:
            self._run_on(self._loop)
        return request.future

    def close(self) -> None:
        """Free the context (pending requests fail)."""
        with self._lock:
            self._closed = True
            pending, self._queue = list(self._queue), deque()
        for request in pending:
            request.future.set_exception(EnrichError("the decoder was closed"))
        if self._ctx:
            lc.llama_batch_free(self._batch)
            lc.llama_batch_free(self._prefix_batch)
            lc.llama_free(self._ctx)
            self._ctx = None

    # -- the loop ---------------------------------------------------------------------------------

    def _loop(self) -> None:
        active: list[_Sequence] = []
        free = list(range(1, self.n_seq + 1))  # a heap: new requests take the lowest free slot
        try:
            while True:
                with self._lock:
                    if not active and not self._queue:
                        self._running = False
                        return
                self._step(active, free)
        except BaseException as exc:  # fail everything in flight rather than hang the callers
            with self._lock:
                pending, self._queue = list(self._queue), deque()
                self._running = False
            for seq in active:
                self._finish(seq, None, free, error=exc)
            for request in pending:
                request.future.set_exception(exc)

    def _step(self, active: list[_Sequence], free: list[int]) -> None:
        """One decode call: the running sequences' last tokens, then as many queued prompts as
        fit; then one sampled token for every sequence."""
        started = time.perf_counter()
        n = self._continue(active)
        generating = n
        n = self._admit(active, free, n)
        if n == 0:
            return
        if n > generating:  # prompts joined: the new sequences' tokens go in their slots' places
            self._in_slot_order(active, n)
        self._decode(n, generating)
        sampling = time.perf_counter()
        for seq in list(active):
            self._advance(seq, active, free)
        self.stats.sample_seconds += time.perf_counter() - sampling
        self.stats.steps += 1
        self.stats.sequence_steps += generating
        self.stats.step_seconds += time.perf_counter() - started

    def _continue(self, active: list[_Sequence]) -> int:
        """Put each running sequence's last sampled token in the batch, in slot order; return
        its size."""
        n = 0
        active.sort(key=lambda seq: seq.slot)
        for seq in active:
            n = self._add(self._batch, n, seq.generated[-1], seq.pos, seq.slot, True)
            seq.output_index, seq.pos = n - 1, seq.pos + 1
        return n

    def _admit(self, active: list[_Sequence], free: list[int], n: int) -> int:
        """Start queued requests in free slots while the batch has room (the shared prefix is
        copied, not decoded); return the batch size."""
        copied = False
        while free:
            with self._lock:
                request = self._queue[0] if self._queue else None
                if request is None:
                    break
                shared = request.prefix_len if request.prefix_len >= MIN_SHARED_PREFIX else 0
                shared = min(shared, len(request.tokens) - 1)
                switch = shared > 0 and request.tokens[:shared] != self._prefix
                if (switch and copied) or n + len(request.tokens) - shared > self.n_batch:
                    break  # next step: the prefix holder is still being copied from / batch full
                if not switch:
                    self._queue.popleft()  # from here on, a failure is reported through `active`
            if switch:  # the request stays queued until its prefix is in place
                self._load_prefix(request.tokens[:shared])
                continue
            slot = heapq.heappop(free)
            lc.llama_memory_seq_rm(self._mem, slot, -1, -1)
            if shared:
                lc.llama_memory_seq_cp(self._mem, 0, slot, -1, -1)  # whole stream: the prefix
                copied = True
            grammar = None
            if request.grammar:
                grammar = lc.llama_sampler_init_grammar(
                    self._vocab, request.grammar.encode(), b"root"
                )
                if not grammar:
                    heapq.heappush(free, slot)
                    request.future.set_exception(EnrichError("llama.cpp rejected the grammar"))
                    continue
            seq = _Sequence(request, slot, grammar, pos=shared)
            active.append(seq)
            self.stats.shared_tokens += shared
            for i, token in enumerate(request.tokens[shared:]):
                last = shared + i == len(request.tokens) - 1
                n = self._add(self._batch, n, token, seq.pos, slot, last)
                seq.pos += 1
            seq.output_index = n - 1
        return n

    def _in_slot_order(self, active: list[_Sequence], n: int) -> None:
        """Sort the batch's ``n`` tokens by sequence (stably: each prompt keeps its order), so
        llama.cpp runs the generating tokens and the first token of each new prompt as one graph,
        not split at every new prompt; point each sequence at its logits' new place."""
        batch = self._batch
        order = sorted(range(n), key=lambda i: batch.seq_id[i][0])
        rows = [(batch.token[i], batch.pos[i], batch.seq_id[i][0], batch.logits[i]) for i in order]
        where: dict[int, int] = {}
        for i, (token, pos, slot, logits) in enumerate(rows):
            batch.token[i], batch.pos[i], batch.seq_id[i][0], batch.logits[i] = (
                token,
                pos,
                slot,
                logits,
            )
            if logits:
                where[slot] = i
        for seq in active:
            seq.output_index = where[seq.slot]

    def _decode(self, n: int, generating: int) -> None:
        """Run the model on the batch's ``n`` tokens (``generating`` of them continue answers)."""
        self._batch.n_tokens = n
        started = time.perf_counter()
        rc = lc.llama_decode(self._ctx, self._batch)
        if rc != 0:
            raise EnrichError(f"llama_decode failed with code {rc} on a batch of {n} tokens")
        self.stats.decode_seconds += time.perf_counter() - started
        self.stats.decode_calls += 1
        self.stats.prompt_tokens += n - generating

    def _advance(self, seq: _Sequence, active: list[_Sequence], free: list[int]) -> None:
        """Sample ``seq``'s next token; finish it at end of generation, a dead end or its cap."""
        token = self._sample(seq)
        if token is None:
            error = EnrichError("the grammar allows no token here; the schema cannot be satisfied")
            self._finish(seq, active, free, error=error)
        elif lc.llama_vocab_is_eog(self._vocab, token):
            self._finish(seq, active, free, reason="stop")
        else:
            seq.generated.append(token)
            self.stats.completion_tokens += 1
            if seq.grammar:
                lc.llama_sampler_accept(seq.grammar, token)
            if len(seq.generated) >= seq.request.max_tokens:
                self._finish(seq, active, free, reason="length")

    @staticmethod
    def _add(batch: Any, n: int, token: int, pos: int, seq_id: int, logits: bool) -> int:
        batch.token[n] = token
        batch.pos[n] = pos
        batch.n_seq_id[n] = 1
        batch.seq_id[n][0] = seq_id
        batch.logits[n] = logits
        return n + 1

    def _load_prefix(self, tokens: list[int]) -> None:
        """Decode ``tokens`` into sequence 0, the holder that new sequences copy from."""
        lc.llama_memory_seq_rm(self._mem, 0, -1, -1)
        self._prefix = []
        batch = self._prefix_batch  # the step's batch is being filled meanwhile
        for start in range(0, len(tokens), self.n_batch):
            n = 0
            for i, token in enumerate(tokens[start : start + self.n_batch]):
                n = self._add(batch, n, token, start + i, 0, start + i == len(tokens) - 1)
            batch.n_tokens = n
            rc = lc.llama_decode(self._ctx, batch)
            if rc != 0:
                raise EnrichError(f"llama_decode failed with code {rc} on the shared prefix")
            self.stats.decode_calls += 1
            self.stats.prompt_tokens += n
        self._prefix = list(tokens)

    def _sample(self, seq: _Sequence) -> int | None:
        """Greedy after the repeat penalty, constrained by the sequence's grammar."""
        ptr = lc.llama_get_logits_ith(self._ctx, seq.output_index)
        logits = np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))  # overwritten next decode
        window = seq.generated[-self.penalty_last_n :]
        if window and self.repeat_penalty != 1.0:
            ids = np.unique(np.asarray(window, dtype=np.intc))
            values = logits[ids]
            logits[ids] = np.where(
                values <= 0, values * self.repeat_penalty, values / self.repeat_penalty
            )
        token = int(np.argmax(logits))
        if seq.grammar is None:
            return token
        # The chain's choice is the best token the grammar allows. Look for it among the greedy
        # token alone, then the TOP_K best, then the whole vocabulary (slow: 4-8 ms): whenever a
        # tier holds an allowed token, the best of them is the best overall (a tier holds every
        # token tied with its last, so ties still go to the lowest id).
        if self._best_allowed(seq.grammar, logits, np.array([token], dtype=np.intc)) is not None:
            return token
        self.stats.grammar_fallbacks += 1
        for k in TOP_K:
            if k != TOP_K[0]:
                self.stats.grammar_wide_scans += 1
            kth = np.partition(logits, self.n_vocab - k)[self.n_vocab - k]
            best = self._best_allowed(seq.grammar, logits, np.flatnonzero(logits >= kth))
            if best is not None:
                return best
        self.stats.grammar_full_scans += 1
        return self._best_allowed(seq.grammar, logits, None)

    def _best_allowed(self, grammar: Any, logits: np.ndarray, ids: np.ndarray | None) -> int | None:
        """The highest-logit token among ``ids`` (all if None) that ``grammar`` allows; ties go
        to the lowest id, as llama.cpp's greedy sampler does."""
        if ids is None:
            candidates = self._candidates  # ids preset to 0..n_vocab-1
            candidates["logit"] = logits
        else:
            candidates = np.empty(len(ids), dtype=_CANDIDATE)
            candidates["id"], candidates["logit"] = ids, logits[ids]
        candidates["p"] = 0.0
        array = lc.llama_token_data_array(
            data=candidates.ctypes.data_as(lc.llama_token_data_p),
            size=len(candidates),
            selected=-1,
            sorted=False,
        )
        lc.llama_sampler_apply(grammar, ctypes.byref(array))
        allowed = candidates[np.isfinite(candidates["logit"])]
        if not len(allowed):
            return None
        top = allowed["id"][allowed["logit"] == allowed["logit"].max()]
        return int(top.min())

    def _finish(
        self,
        seq: _Sequence,
        active: list[_Sequence] | None,
        free: list[int],
        *,
        reason: str = "stop",
        error: BaseException | None = None,
    ) -> None:
        if active is not None:
            active.remove(seq)
        if seq.grammar:
            lc.llama_sampler_free(seq.grammar)
            seq.grammar = None
        if self._ctx:
            lc.llama_memory_seq_rm(self._mem, seq.slot, -1, -1)
        heapq.heappush(free, seq.slot)
        if error is not None:
            seq.request.future.set_exception(error)
            return
        text = self.llama.detokenize(seq.generated).decode("utf-8", errors="replace")
        seq.request.future.set_result(
            Completion(text, len(seq.request.tokens), len(seq.generated), reason)
        )
