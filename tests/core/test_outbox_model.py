"""Random sequences of appends (routine and urgent), acks, reopenings and compactions
against a plain model: pending gives the urgent records first, each group in append order."""

import shutil
import tempfile

from gridlink.firmware.core.outbox import PHOTO_PROGRESS, REPORT, TASK_RESULT, TRACK, Outbox
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule


class OutboxModel(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="outbox-model-")
        self.max_bytes = 6000
        self.ob = Outbox(self.dir, self.max_bytes, sync=False)
        self.model = {}            # seq -> (kind, payload), unacked, in append order
        self.urgent = set()        # seqs appended urgent
        self.last = 0

    @rule(kind=st.sampled_from([REPORT, TASK_RESULT, PHOTO_PROGRESS]),
          payload=st.binary(max_size=120), urgent=st.booleans())
    def append(self, kind, payload, urgent):
        urgent = urgent and kind != PHOTO_PROGRESS
        room = self.max_bytes - 28 - sum(19 + len(p) for _, p in self.model.values())
        if 19 + len(payload) > room:           # would need eviction: keep the model simple
            return
        seq = self.ob.append(kind, payload, urgent=urgent)
        assert seq > self.last
        self.last = seq
        self.model[seq] = (kind, payload)
        if urgent:
            self.urgent.add(seq)

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def ack(self, data):
        seq = data.draw(st.sampled_from(sorted(self.model)))
        assert self.ob.ack(seq)
        del self.model[seq]

    @precondition(lambda self: len(self.model) > 1)
    @rule(data=st.data())
    def ack_many(self, data):
        seqs = data.draw(st.lists(st.sampled_from(sorted(self.model)), unique=True))
        assert self.ob.ack_many([*seqs, 10 ** 6]) == len(seqs)
        for s in seqs:
            del self.model[s]

    @rule()
    def reopen(self):
        self.ob.close()
        self.ob = Outbox(self.dir, self.max_bytes, sync=False)
        assert self.ob.problems == []

    @rule()
    def compact(self):
        self.ob.compact()

    @invariant()
    def same_as_model(self):
        order = sorted(self.model, key=lambda s: (s not in self.urgent, s))
        assert [(s, k, p) for s, k, p in self.ob.pending()] == \
            [(s, *self.model[s]) for s in order]
        assert [s for s, _k, _p in self.ob.pending(REPORT)] == \
            [s for s in order if self.model[s][0] == REPORT]
        assert all(self.ob.is_urgent(s) == (s in self.urgent) for s in self.model)
        assert self.ob.depth() == len(self.model)
        assert self.ob.depth(TRACK) == 0
        assert self.ob.cursor == (min(self.model) - 1 if self.model else self.ob.next_seq - 1)
        assert self.ob.size <= self.max_bytes

    def teardown(self):
        self.ob.close()
        shutil.rmtree(self.dir, ignore_errors=True)


OutboxModel.TestCase.settings = settings(max_examples=40, stateful_step_count=40,
                                         deadline=None)
test_outbox_matches_the_model = OutboxModel.TestCase
