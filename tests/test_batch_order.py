"""The batch the embedded decoder hands llama.cpp lists its running sequences by slot.

llama.cpp runs the graph once per run of consecutive sequence ids in batch order, so a batch in
any other order costs a graph run per break (measured: a full step 150 -> 285 ms).
"""

from __future__ import annotations

import llama_cpp as lc

from enrich.llm.batched import BatchDecoder, _Request, _Sequence


def test_running_sequences_enter_the_batch_in_slot_order() -> None:
    decoder = object.__new__(BatchDecoder)  # no model needed to fill a batch
    decoder._batch = lc.llama_batch_init(8, 0, 1)
    try:
        active = [
            _Sequence(_Request([1], 0, None, 10), slot=slot, grammar=None, pos=pos)
            for slot, pos in ((3, 30), (1, 10), (4, 40), (2, 20))
        ]
        for seq in active:
            seq.generated.append(100 + seq.slot)

        n = decoder._continue(active)

        batch = decoder._batch
        assert n == 4
        assert [batch.seq_id[i][0] for i in range(n)] == [1, 2, 3, 4]
        assert [batch.token[i] for i in range(n)] == [101, 102, 103, 104]
        assert [batch.pos[i] for i in range(n)] == [10, 20, 30, 40]
        # each sequence reads its logits where its token went, and moved one position on
        assert {s.slot: (s.output_index, s.pos) for s in active} == {
            1: (0, 11),
            2: (1, 21),
            3: (2, 31),
            4: (3, 41),
        }
    finally:
        lc.llama_batch_free(decoder._batch)


def test_a_new_prompt_goes_in_its_slot_place_and_keeps_its_order() -> None:
    decoder = object.__new__(BatchDecoder)
    decoder._batch = lc.llama_batch_init(16, 0, 1)
    try:
        running = [
            _Sequence(_Request([1], 0, None, 10), slot=slot, grammar=None, pos=10 * slot)
            for slot in (4, 1, 2)
        ]
        for seq in running:
            seq.generated.append(100 + seq.slot)
        n = decoder._continue(running)  # slots 1, 2, 4
        new = _Sequence(_Request([7, 8, 9], 0, None, 10), slot=3, grammar=None, pos=0)
        for i, token in enumerate(new.request.tokens):  # as _admit appends a prompt
            n = decoder._add(decoder._batch, n, token, i, 3, i == 2)
        active = [*running, new]

        decoder._in_slot_order(active, n)

        batch = decoder._batch
        assert [batch.seq_id[i][0] for i in range(n)] == [1, 2, 3, 3, 3, 4]
        assert [batch.token[i] for i in range(n)] == [101, 102, 7, 8, 9, 104]
        assert [batch.pos[i] for i in range(n)] == [10, 20, 0, 1, 2, 40]
        assert [bool(batch.logits[i]) for i in range(n)] == [True, True, False, False, True, True]
        assert {s.slot: s.output_index for s in active} == {1: 0, 2: 1, 3: 4, 4: 5}
    finally:
        lc.llama_batch_free(decoder._batch)
