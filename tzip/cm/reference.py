"""The CM stage, normative reference: readable pure Python (slow; tests run it on small
inputs). tzip/cm/jit.py computes exactly the same integers, fast.

How a byte is coded
-------------------
A byte is 8 binary decisions, most significant bit first. Before bit j the decoder knows
c0 = 1 followed by the j bits already coded (1..255). Every model predicts P(bit = 1) as a
12-bit integer p (1..4095); the mixers combine the predictions in the logistic domain
(st(p) = 256 ln(p / (1 - p)), tables.STRETCH) and two APMs refine the result; the binary
arithmetic coder codes the bit with the final p; then every component learns the bit.

Inputs of the mixers (tables.IN_*):
 - the transformer: P(bit = 1 | c0) from its 256 frequencies f as a ratio of two partial
   sums over the byte's binary tree (prefix sums), and the same refined by an APM keyed by
   (previous byte, c0), which learns how far to trust the transformer in this block;
 - an order-1 counter (previous byte, c0), direct;
 - hashed context models (tables.CONTEXTS): orders 2, 3, 4, 8, 12, 24 (one hash chain
   over the previous bytes); word (the letters since the last non-letter, NULs skipped so
   UTF-16 text keeps its words, with the previous byte); column (the byte above: same
   column of the previous line of this stream, with the previous byte); even (the 2nd,
   4th and 6th bytes back: UTF-16 code units, 2-byte records); and from revision 2,
   field (how many separators , ; tab | since the line start, with the field's bytes so
   far: the column of a CSV table, the field of a log line) and field_above (the byte at
   the same offset of the same field of the previous line, with the field's number: the
   cell above, whatever the widths of the cells before it). Each context selects, at
   each nibble boundary, a bucket of 16 uint32 slots in one hash table: a 16-bit checksum
   and 15 adaptive probability counters, one per node of the nibble's binary tree. Each
   counter gives two inputs: st(p), and st of a second counter found by (context, the
   counter's count capped at 15, p's top 6 bits), which learns what "seen n times, with
   this p" means in this block (the calibration that bit-history states give paq);
 - the match model: the byte that followed the last earlier occurrence of the stream's
   last MATCH_MIN bytes, anywhere in the block's coded bytes (any stream, steps < t), and
   the length the two contexts agree (verified backwards, up to MATCH_VERIFY); it gives
   an adaptive st(p) by (length capped at 15, expected bit) and a signed linear length,
   while the bits so far agree with the predicted byte; a copy is followed while its
   guesses come true; and match model 2, the same within the stream's own history (by
   (length, expected bit) only);
 - a bias (constant 256).

Mixing: mixer A has a weight set per c0, mixer B per (match length bucket, transformer
confidence bucket, parity of the byte's offset in the block), and from revision 2 mixer
C per 12-bit hash of the two previous bytes; each outputs st = sum(w_i x_i) >> 16
(weights 16.16 fixed point) and is trained on its own error:
w_i += (x_i * err * LR + 2^15) >> 16, err = (y << 12) - p. A final mixer (weight set per
bit position and parity) combines st_A, st_B, the transformer's st, a bias and st_C (0
in revision 1, where that weight never moves). Two APMs
(by c0; by a hash of the two previous bytes and c0) refine it:
p = (p_f + p_apm1 + 2 p_apm2 + 2) >> 2, clamped to 1..4095.

What the decoder knows at step t: every stream's bytes at steps < t and the current
byte's bits so far. All contexts use only those (the match model's pointer must be at a
step < t), so the decoder reproduces every probability. All state (hash table, counters,
mixers, APMs, match table) is per block and shared by its streams; per stream: the match
pointer and length, the word hash, the line starts, the field, its hash and where the
fields of this line and of the line before start.

Revision 1 (format 4) is revision 2 without the field and field_above contexts (their
inputs stay 0, their buckets are never looked up) and without mixer C: so one definition serves both, and a
revision-1 block codes exactly as format 4 always has.

Revision 3 (format 8; measured in bench/published/cm/rev3-ablations.md) is revision 2 and:
four contexts for structured text (tables.CONTEXTS: nest, the bracket depth, innermost
open bracket and "inside a string", with two bytes; record, the column with the byte
above; field_prev, the field's number and bytes so far with the same field of the line
before; word2, this word and the one before), each with its two inputs after revision 2's
(tables.INPUTS_R3), starting at weight 0 in every mixer; and two more APMs on the final
probability, by (previous byte, c0) and by (both match models' expected bits, the match
length, c0), averaged in: p = (p_f + p_apm1 + 2 (p_apm2 + p_o1 + p_match) + 4) >> 3.
What it tracks per stream for them (state.Structure): the open brackets outside strings,
whether inside a "string" (a backslash escapes its quote), the word before this one, and
the hash of each field of this line and of the line before.

Revision 4 (format 9; measured in bench/published/cm/rev4-candidates.md) is revision 3
with another match rule (tables.match_rule) and two more contexts. Match model 1 looks
its candidate up by the last MATCH_LONG (12) bytes first, in the same table under another
hash, then by the last MATCH_MIN_R4 (4); match model 2 by the last 4; and after a wrong
guess in a copy of at least MATCH_RECOVER (8) bytes each follows its copy on at length 1
(lengths below 4 then mean "recovering": their counters learn how far such a copy is
right). The contexts (tables.CONTEXTS, inputs after revision 3's: tables.INPUTS_R4):
indirect, the bytes that followed the two previous bytes the last two times they occurred
(anywhere in the block), with the previous byte; line_head, a hash of the line's first LINE_HEAD bytes with the word
so far. What it tracks for them: a table of 65,536 byte pairs (state.Structure.indirect)
and each stream's line head.

Revision 5 (format 10; measured in bench/published/cm/rev5-candidates.md) is revision 4
with a run per context and mixer B's weight sets also by the order contexts seen. The run
of a context is the byte that followed it last and how many times in a row it did (an
entry of state.Structure.run_table found by a hash of the context, with a 16-bit
checksum; no probing: a colliding context replaces it). While the bits so far agree with
the run's byte, the context's run input (tables.INPUTS_R5, after revision 4's inputs) is
st(p) of a counter by (context, length capped at RUN_SM_LEN, the byte's next bit): it
learns how far a context that repeated its byte n times is right in this block, the part
of a bit history that counters (which weigh every byte alike) lose. What the run says of
the bit (tables.run_expects: nothing, or 0 or 1 from a run shorter than RUN_LONG or from
a longer one) also chooses the row of the context's map (RUN_ROWS rows), so that the map
calibrates counter and run together. After the byte every run goes on (length + 1) or
starts again at 1, in context order. "Seen" is how many of
the order contexts (tables.ORDER_SLOTS) had been met before with this nibble (their
bucket's first counter has a count), counted at each nibble's lookup: with the match
length, it says how much history the mix can trust.

Revision 6 (format 11; measured in bench/published/cm/rev6-candidates.md) is revision 5
with two more contexts, two more mixers and a learning rate that falls. The shape context
(with shape_long, tables.CONTEXTS' last two, their inputs and runs after revision 5's:
tables.INPUTS_R6) hashes the last SHAPE_RUNS runs of byte classes (tables.shape_class:
digit, capital, small letter, or the byte itself) and the current run's length: "a time,
a space, a bracketed number" is one context whatever the digits, so what follows a
variable field of a record is learnt from every record; shape_long the last
SHAPE_LONG_RUNS runs. Mixer D has a weight set per (field number, bytes
into the field, bit position) (tables.mix_set_d): where in its record the byte is; its
output is the final mixer's sixth input. Mixer E has one per (a hash of the classes of
the shape's last MIX_E_RUNS runs, bit position): what kind of bytes came just before;
its output is the seventh. Mixers A to E learn at tables.mix_rate of the bytes coded
before the byte (t * S + s), from 32 down to 14. What it tracks per stream:
the shape (the classes of the last SHAPE_LONG_RUNS runs, 4 to a word, the last class,
its run's length).

Revision 7 (format 12; measured in bench/published/cm/rev7-candidates.md) is revision 6
with two more contexts and three changes to the mixers' learning. The contexts
(tables.CONTEXTS' last two, their inputs and runs after revision 6's: tables.INPUTS_R7):
word3, the word so far with the two words before it; shape_word, the classes of the
shape's last 4 runs with the word so far (a word wherever it follows the same kind of
bytes, whatever their digits). Mixer A's weight set is chosen by the previous byte's class
(tables.mix_class: digit, letter, space or tab, other) as well as c0. Each weight set of
mixers A to E counts its updates and learns at tables.set_rate of the block's rate: up to
three times as fast while it is new, so a set chosen seldom learns in fewer bits. The
final mixer learns at LR_F7 (5, not 8). What it tracks per stream: the word before the
word before (state.Structure.prev_word2); and the sets' update counts
(state.Structure.set_counts).

The arithmetic coder (carry-less, 32-bit, as in lpaq1): the range [x1, x2] is split at
xmid = x1 + ((x2 - x1) >> 12) * p; bit 1 keeps [x1, xmid], bit 0 [xmid + 1, x2]; while
the top bytes of x1 and x2 agree, that byte is output and both shift left by 8. The
encoder ends with one byte, (x1 >> 24) + 1, which followed by zeros lies in the final
range. The decoder reads 4 bytes ahead; past the payload's end it reads up to SLACK zero
bytes and then reports an error, so a hostile payload cannot make it run on; a complete
decode has read exactly len(payload) + 3 bytes.
"""
from __future__ import annotations

import numpy as np

from . import tables as T
from .state import X, X1, X2, Match, Mixed, Picked, Refined, new_state, new_structure
from .tables import (apm_match_context, clamp, hmix, is_closer, is_letter, is_opener, is_separator,
                     match_length_bucket, run_expects, shape_class, squash, stretch)

DT = T.DT.tolist()  # the counters' rates as Python ints (list indexing: the reference is slow enough)


class Counters:
    """Adaptive probability counters in a list: each a 22-bit probability and a 10-bit
    count packed as (p << 10) | n. The rate 1/(n + 1.5) makes the first observations
    count fully (a frequency estimate) and `limit` keeps later ones from freezing it."""

    def __init__(self, values: list[int]):
        self.v = values

    def p12(self, i: int) -> int:
        return self.v[i] >> 20

    def update(self, i: int, y: int, limit: int) -> None:
        e = self.v[i]
        n, p = e & 1023, e >> 10
        p += (((y << 22) - p) * DT[n]) >> 16
        if n < limit:
            n += 1
        self.v[i] = (p << 10) | n


class HashTable(Counters):
    """Buckets of BUCKET slots: [checksum, 15 counters of a nibble's tree]. A lookup tries
    PROBES neighbouring buckets; on a miss it takes an empty one or the one whose first
    counter has seen least, and resets it."""

    def __init__(self, values: list[int], bits: int):
        super().__init__(values)
        self.bits = bits

    def find(self, h: int, key: int) -> int:
        hh = hmix(h, key + 1)
        idx = hh >> (32 - self.bits)
        chk = hmix(hh, T.CHECKSUM_SEED) & 0xFFFF or 1
        best, best_pri = -1, 1 << 30
        for k in range(T.PROBES):
            b = (idx ^ k) * T.BUCKET
            if self.v[b] == chk:
                return b
            pri = -1 if self.v[b] == 0 else self.v[b + 1] & 1023
            if pri < best_pri:
                best, best_pri = b, pri
        self.v[best] = chk
        for i in range(1, T.BUCKET):
            self.v[best + i] = T.COUNTER_INIT
        return best


class APM:
    """Adaptive probability map: per context, APM_BINS bins over the stretched input
    probability, interpolated; the nearer bin learns the coded bit at rate 2^-APM_RATE."""

    def __init__(self, values: list[int]):
        self.t = values

    def p(self, ctx: int, p: int) -> tuple[int, int]:
        """-> (the refined probability, the bin that learns the bit)."""
        s = stretch(p) + 2048
        lo, w = s >> 7, s & 127
        idx = ctx * T.APM_BINS + lo
        return clamp((self.t[idx] * (128 - w) + self.t[idx + 1] * w) >> 11, 1, 4095), idx + (w >> 6)

    def update(self, index: int, y: int) -> None:
        r = T.APM_RATE
        g = (y << 16) + (y << r) - y - y
        self.t[index] += (g - self.t[index]) >> r


class Mixer:
    """Weight sets of n inputs (16.16 fixed point) in one list; one set is chosen per bit."""

    def __init__(self, weights: list[int], n: int, lr: int, counts: list[int] | None = None):
        self.w = weights
        self.n = n
        self.lr = lr
        self.counts = counts  # revision 7: each set's updates so far (tables.set_rate), else None

    def mix(self, sel: int, x: list[int]) -> int:
        """-> the stretched output st of weight set sel, clamped to +-ST_LIMIT."""
        w = self.w[sel * self.n:(sel + 1) * self.n]
        return clamp(sum(wi * xi for wi, xi in zip(w, x)) >> 16, -T.ST_LIMIT, T.ST_LIMIT)

    def update(self, sel: int, x: list[int], y: int, p: int) -> None:
        """Train set sel on its error: its output said p (squash of its st), the bit was y."""
        rate = self.lr
        if self.counts is not None:  # revision 7: faster while the set is new
            n = self.counts[sel]
            self.counts[sel] = min(n + 1, T.SET_COUNT_CAP)
            rate = T.set_rate(self.lr, n)
        err = ((y << 12) - p) * rate
        base = sel * self.n
        # unbounded: a step moves w by < 128 * rate (|x * err| < 2^23): < 4100 at rate 32
        # (revision 6, for its first 32 Ki bytes at most), < 3100 at 24, so 2^33 bits keep
        # |w| < 2^45; revision 7's sets learn at up to 3 times that while new (less than
        # 2^21 more in all) and at set_rate(24, 1023) = 26 at most after 128 Ki bytes
        # (< 2^44.7 over 2^33 bits), so a dot product of 70 inputs stays below
        # 70 * 2^45 * 2047 < 2^63 (no int64 overflow)
        for i, xi in enumerate(x):
            self.w[base + i] += (xi * err + 32768) >> 16


class StreamState:
    """Per-stream memory between its bytes (initial values: row s of state.new_state's)."""

    def __init__(self, st, s: int, r3=None):
        self.match_ptr = int(st.match_ptr[s])  # 1 + step * S + stream of the byte the match predicts; 0: none
        self.match_len = int(st.match_len[s])  # bytes the two contexts agree (0: no match)
        self.match2_ptr = int(st.match2_ptr[s])  # step of the byte match model 2 predicts (in this stream)
        self.match2_len = int(st.match2_len[s])
        self.word = int(st.word[s])  # hash of the letters since the last non-letter
        self.line_start = int(st.line_start[s])  # step after this stream's last newline
        self.prev_line = int(st.prev_line[s])  # where the line before started
        self.field = int(st.field[s])  # separators since the line start (revision 2)
        self.field_hash = int(st.field_hash[s])  # hash of the field's bytes so far (revision 2)
        # where the fields of this line and of the line before start (-1: not yet)
        self.field_start = st.field_start[s].tolist()
        self.prev_field_start = st.prev_field_start[s].tolist()
        if r3 is not None:  # revision 3 (state.Structure)
            self.depth, self.quote, self.escape = (int(v) for v in r3.nest[s])  # depth, in a string, after a backslash
            self.nest_stack = r3.nest_stack[s].tolist()  # the open brackets
            self.prev_word = int(r3.prev_word[s])  # hash of the word before this one
            self.field_hashes = r3.field_hashes[s].tolist()  # this line's finished fields
            self.prev_field_hashes = r3.prev_field_hashes[s].tolist()  # the line before's
            self.line_head = int(r3.line_head[s])  # revision 4: hash of the line's first bytes
            # revision 6: the byte-class runs (SHAPE_WORDS words of 4, the latest first),
            # the last byte's class and how many bytes of it in a row
            self.shape = r3.shape[s].tolist()
            self.prev_word2 = int(r3.prev_word2[s])  # revision 7: the word before prev_word


class CMModel:
    """The CM stage for one block: S streams of the given lengths, bytes in hist (S, L)
    (the decoder fills it). Same driving interface as fast.FastCM; the byte is coded in
    tables.PHASES, methods of the same names as tzip/cm/jit.py's functions."""

    def __init__(self, lengths: np.ndarray, hist: np.ndarray, buf: np.ndarray, revision: int):
        st, table_bits, self.match_bits = new_state(lengths, hist, buf, revision)
        self.hist = hist
        self.revision = revision
        self.nctx = T.N_CONTEXTS[revision]  # each revision has the first nctx contexts
        self.use_c = revision >= T.MIXER_C_FROM
        self.structure = revision >= T.STRUCTURE_FROM
        self.match_min, self.match_long, self.recover = T.match_rule(revision)
        self.run = revision >= T.RUN_FROM
        r3 = new_structure(len(st.lengths), int(np.sum(st.lengths)), revision) if self.structure else None
        self.lengths = st.lengths.tolist()
        self.S = len(self.lengths)
        self.start = st.start.tolist()  # each stream's offset in the block
        self.table = HashTable(st.table.tolist(), table_bits)
        self.o1 = Counters(st.o1.tolist())
        self.ctx_map = Counters(st.ctx_map.tolist())
        self.match_sm = Counters(st.match_sm.tolist())
        self.match2_sm = Counters(st.match2_sm.tolist())
        self.match_table = st.match_table.tolist()
        self.match2_table = st.match2_table.tolist()
        self.streams = [StreamState(st, s, r3) for s in range(self.S)]
        self.n_in = T.n_inputs(revision)  # the first n_in of tables.INPUTS_R7
        # revision 7: each weight set of mixers A to E counts its updates (rows 0-4), else None
        self.word3 = revision >= T.WORD3_FROM
        counts = r3.set_counts.tolist() if self.word3 else [None] * 5
        self.mixer_a = Mixer(st.w_a.tolist(), self.n_in, T.LR_A, counts[0])
        self.mixer_b = Mixer(st.w_b.tolist(), self.n_in, T.LR_B, counts[1])
        self.mixer_c = Mixer(st.w_c.tolist(), self.n_in, T.LR_C, counts[2])
        self.mixer_f = Mixer(st.w_f.tolist(), T.n_final(revision), T.lr_final(revision))
        self.apm_tf, self.apm1, self.apm2 = APM(st.apm_tf.tolist()), APM(st.apm1.tolist()), APM(st.apm2.tolist())
        if r3 is not None:
            self.apm_o1, self.apm_match = APM(r3.apm_o1.tolist()), APM(r3.apm_match.tolist())
            self.indirect = r3.indirect.tolist()  # revision 4: what followed each two bytes
            self.run_table = r3.run_table.tolist()  # revision 5: each context's run
            self.run_bits = len(self.run_table).bit_length() - 1  # as state.new_structure sized it
            self.run_sm = Counters(r3.run_sm.tolist())
            self.mixer_d = Mixer(r3.w_d.tolist(), self.n_in, T.LR_C, counts[3])  # revision 6
            self.mixer_e = Mixer(r3.w_e.tolist(), self.n_in, T.LR_C, counts[4])
        self.mix_d = revision >= T.SHAPE_FROM
        self.seen = 0  # revision 5: the order contexts seen before (set at each nibble's lookup)
        # coder
        self.x1, self.x2, self.x = (int(st.coder[i]) for i in (X1, X2, X))
        self.out = bytearray()
        self.buf = bytes(buf)
        self.pos = 0
        self.err = False
        self.decoding = False

    # ------------------------------------------------------------------ driving
    def restart(self, buf: np.ndarray) -> None:
        """A fresh coder on buf, the model's learning kept (tzip/cm/alone.py primes it)."""
        self.x1, self.x2, self.x = 0, T.MASK32, 0
        self.out = bytearray()
        self.buf = bytes(buf)
        self.pos = 0
        self.err = False

    def start_decoding(self) -> None:
        self.decoding = True
        self.x = 0
        for _ in range(4):
            self.x = (self.x << 8) | self._read()

    def _read(self) -> int:
        """Next payload byte; zeros for SLACK bytes past the end, then an error."""
        pos = self.pos
        self.pos += 1
        if pos < len(self.buf):
            return self.buf[pos]
        if pos >= len(self.buf) + T.SLACK:
            self.err = True
        return 0

    def flush(self) -> None:
        self.out.append((self.x1 >> 24) + 1)

    def output(self) -> bytes:
        return bytes(self.out)

    def reserve(self, extra: int) -> None:  # the bytearray grows by itself
        pass

    def error(self) -> bool:
        return self.err

    def position(self) -> int:
        return self.pos

    def payload_length(self) -> int:
        return len(self.buf)

    def code_steps(self, t0: int, freqs: np.ndarray, decoding: bool, lo: int = 0, hi: int | None = None) -> None:
        """Steps t0 .. t0 + c - 1 of streams lo .. hi - 1 (all by default) in step-major
        order (freqs (hi - lo, c, 256)). Coding a step's streams in several calls, in
        order, is the same as coding them in one."""
        hi = self.S if hi is None else hi
        for k in range(freqs.shape[1]):
            t = t0 + k
            for s in range(lo, hi):
                if t < self.lengths[s]:
                    byte = self.code_byte(s, t, freqs[s - lo, k], int(self.hist[s, t]))
                    if decoding:
                        self.hist[s, t] = byte
                        if self.err:
                            return

    def code_byte(self, s: int, t: int, freq: np.ndarray, byte: int) -> int:
        """Code (or decode and return) the byte of stream s at step t, phase by phase."""
        cum = [0] * 257  # prefix sums of the transformer's frequencies
        for i in range(256):
            cum[i + 1] = cum[i] + int(freq[i])
        c, ctx_hashes, runs = self.contexts(s, t)
        m = self.match(s, t)
        len_bucket = match_length_bucket(m.length)
        parity = (self.start[s] + t) & 1  # of the byte's offset in the block
        # revision 6: mixers D's and E's sets for bit 0 (-1: no such mixers)
        place, kind = (self.place(s, t), self.kind(s)) if self.mix_d else (-1, -1)
        if self.mix_d:  # and the mixers' learning rate, by how much of the block was coded before
            rate = T.mix_rate(t * self.S + s)
            self.mixer_a.lr = self.mixer_b.lr = self.mixer_c.lr = self.mixer_d.lr = self.mixer_e.lr = rate
        base_a = T.mix_class(c[1]) * T.MIX_SETS_A if self.word3 else 0  # revision 7: mixer A's sets by c1's class
        byte_sets = (place, kind, base_a)
        x = [0] * self.n_in
        slots = [0] * self.nctx  # each context's bucket
        cmap_index = [0] * self.nctx  # each context's counter in the context map
        run_index = [-1] * len(runs)  # each context's run counter (-1: its run says nothing)
        c0 = 1
        for j in range(8):
            k = self.inputs(j, c0, c[1], cum, x, slots, ctx_hashes, cmap_index, m, runs, run_index)
            mx, rf = self.mix(j, c0, c, x, k.expect, len_bucket, parity, m, byte_sets)
            y = self.code(mx.p, (byte >> (7 - j)) & 1)
            self.learn(x, y, slots, cmap_index, k, mx, rf, run_index)
            c0 = (c0 << 1) | y
            if self.err:
                return 0
        byte = c0 & 255
        self.advance(s, t, byte, m, runs)
        return byte

    def place(self, s: int, t: int) -> int:
        """Revision 6: mixer D's weight set for bit 0 of the byte of stream s at step t,
        where in its record the byte is (tables.mix_set_d: the field, the bytes into it,
        unknown past FIELDS fields)."""
        ss = self.streams[s]
        f = ss.field
        return T.mix_set_d(f, t - ss.field_start[f] if f <= T.FIELDS else -1, 0)

    def kind(self, s: int) -> int:
        """Revision 6: mixer E's weight set for bit 0 of stream s's next byte, by the
        classes of the shape's last MIX_E_RUNS runs (what kind of bytes came just before)."""
        return (hmix(self.streams[s].shape[0] & T.MIX_E_MASK, T.MIX_E_SEED) >> (32 - T.MIX_E_BITS)) * 8

    # ------------------------------------------------------------------ phases
    def _byte(self, s: int, t: int) -> int:
        return int(self.hist[s, t]) if t >= 0 else 0

    def contexts(self, s: int, t: int) -> tuple[list[int], list[int], list[list[int]]]:
        """-> (c: c[k] the byte k back, 0 before the start; the hashes of the revision's
        contexts, tables.CONTEXTS[:nctx]; in revision 5 each context's run, [its index in
        the run table, checksum, byte, length (0: none)], else []), fixed for the whole byte."""
        ss = self.streams[s]
        c = [0] + [self._byte(s, t - k) for k in range(1, T.HISTORY + 1)]
        c1 = c[1]
        ctx = {}
        h = hmix(T.SEED_ORDER, c1)  # orders: one hash chain over the previous bytes
        for k in range(2, T.MAX_ORDER + 1):
            h = hmix(h, self._byte(s, t - k))
            ctx[f"o{k}"] = h
        ctx["word"] = hmix(hmix(T.SEED_WORD, ss.word), c1)
        above_at = ss.prev_line + t - ss.line_start  # same column, previous line of this stream
        above = self._byte(s, above_at) if above_at < ss.line_start else 0
        ctx["column"] = hmix(hmix(T.SEED_COLUMN, above), c1)
        ctx["even"] = hmix(hmix(hmix(T.SEED_EVEN, c[2]), c[4]), c[6])
        f = ss.field
        ctx["field"] = hmix(hmix(T.SEED_FIELD, f), ss.field_hash)
        above = 0  # 1 + the byte at the same offset of the same field of the line before
        if f < T.FIELDS and ss.prev_field_start[f] >= 0:
            at = ss.prev_field_start[f] + t - ss.field_start[f]
            end = ss.prev_field_start[f + 1] - 1  # that field's separator,
            if end < 0:
                end = ss.line_start - 1  # or the newline that ends the line
            if at < end:
                above = self._byte(s, at) + 1
        ctx["field_above"] = hmix(hmix(T.SEED_FIELD_ABOVE, above), f)
        if self.structure:  # revision 3's four contexts (tables.CONTEXTS)
            depth = ss.depth
            top = ss.nest_stack[min(depth, T.NEST_MAX) - 1] if depth > 0 else 0  # the innermost opener
            h = hmix(hmix(hmix(T.SEED_NEST, min(depth, T.NEST_DEPTH_CAP)), top), ss.quote)
            ctx["nest"] = hmix(h, c1 | (c[2] << 8))
            column_above = self._byte(s, above_at) if above_at < ss.line_start else 0
            ctx["record"] = hmix(hmix(T.SEED_RECORD, min(t - ss.line_start, T.RECORD_COL_CAP)), column_above)
            prev_field = ss.prev_field_hashes[f] if f <= T.FIELDS else 0
            ctx["field_prev"] = hmix(hmix(hmix(T.SEED_FIELD_PREV, f), prev_field), ss.field_hash)
            ctx["word2"] = hmix(hmix(T.SEED_WORD2, ss.word), ss.prev_word)
        if self.nctx > T.CTX_INDIRECT:  # revision 4's two
            ctx["indirect"] = hmix(hmix(T.SEED_INDIRECT, self.indirect[(c[2] << 8) | c1]), c1)
            ctx["line_head"] = hmix(hmix(T.SEED_LINE_HEAD, ss.line_head), ss.word)
        if self.nctx > T.CTX_SHAPE_LONG:  # revision 6's two
            runs, length = ss.shape[:T.SHAPE_WORDS], ss.shape[-1]
            h = T.SEED_SHAPE
            for w in runs[:T.SHAPE_RUNS // 4]:  # the last SHAPE_RUNS runs, the current one's length
                h = hmix(h, w)
            ctx["shape"] = hmix(h, min(length, T.SHAPE_LEN_CAP))
            h = T.SEED_SHAPE_LONG
            for w in runs:  # the last SHAPE_LONG_RUNS runs
                h = hmix(h, w)
            ctx["shape_long"] = h
        if self.nctx > T.CTX_WORD3:  # revision 7's two
            ctx["word3"] = hmix(hmix(hmix(T.SEED_WORD3, ss.word), ss.prev_word), ss.prev_word2)
            ctx["shape_word"] = hmix(hmix(T.SEED_SHAPE_WORD, ss.shape[0]), ss.word)
        hashes = [ctx[name] for name in T.CONTEXTS[:self.nctx]]
        runs = []
        if self.run:  # revision 5: each context's run, looked up once per byte
            for h in hashes:
                hh = hmix(h, T.RUN_SEED)
                index, check = hh >> (32 - self.run_bits), hmix(hh, T.RUN_CHECK_SEED) & 0xFFFF
                e = self.run_table[index]
                found = e != 0 and e >> 16 == check
                runs.append([index, check, (e >> 8) & 255 if found else 0, e & 255 if found else 0])
        return c, hashes, runs

    def lookup(self, s: int, t: int, slot: int, need: int, mlen: int, mptr: int) -> tuple[int, int]:
        """Match model 1's table at slot: (t, s) is recorded there; while no copy is
        followed (mlen 0), the candidate it held is taken if the contexts agree on `need`
        bytes or more -> (mlen, mptr)."""
        S, hist = self.S, self.hist
        cand = self.match_table[slot]
        self.match_table[slot] = 1 + t * S + s  # this context is now last seen before (t, s)
        if mlen == 0 and cand > 0:
            ps, pt = (cand - 1) % S, (cand - 1) // S
            if pt < t:
                n = 0  # verify: how many bytes before both positions agree
                while (n < T.MATCH_VERIFY and pt - n - 1 >= 0 and t - n - 1 >= 0
                       and hist[ps, pt - n - 1] == hist[s, t - n - 1]):
                    n += 1
                if n >= need:
                    return n, cand
        return mlen, mptr

    def match(self, s: int, t: int) -> Match:
        """Both match models: continue the copy while it is known, else look the context
        up (revision 4: by the last MATCH_LONG bytes first, then by the last MATCH_MIN_R4);
        -> the predicted bytes (-1: none) with their pointers and lengths."""
        S, hist, ss = self.S, self.hist, self.streams[s]
        mptr, mlen = ss.match_ptr, ss.match_len
        if mlen > 0 and (mptr - 1) // S >= t:  # the copy reached bytes not coded yet
            mlen = 0
        if self.match_long and t >= self.match_long:
            h = 0
            for k in range(self.match_long, 0, -1):
                h = hmix(h, int(hist[s, t - k]))
            slot = hmix(h, T.MATCH_LONG_SEED) >> (32 - self.match_bits)
            mlen, mptr = self.lookup(s, t, slot, self.match_long, mlen, mptr)
        h = 0
        if t >= self.match_min:
            for k in range(self.match_min, 0, -1):
                h = hmix(h, int(hist[s, t - k]))
            mlen, mptr = self.lookup(s, t, h >> (32 - self.match_bits), self.match_min, mlen, mptr)

        # match model 2: the same, in this stream's own history only (a table keyed by
        # (context, stream) holding 1 + step); it pays where a stream repeats itself
        # (logs, JSON: -2.5% and -3.8%) more than the latest occurrence anywhere says
        m2ptr, m2len = ss.match2_ptr, ss.match2_len
        if t >= self.match_min:
            slot2 = hmix(h, s + 1) >> (32 - self.match_bits)
            cand2 = self.match2_table[slot2]
            self.match2_table[slot2] = t + 1
            if m2len == 0 and 0 < cand2 <= t:  # (t + 1 from another stream: not known yet)
                pt = cand2 - 1
                n = 0
                while n < T.MATCH_VERIFY and pt - n - 1 >= 0 and hist[s, pt - n - 1] == hist[s, t - n - 1]:
                    n += 1
                if n >= self.match_min:
                    m2len, m2ptr = n, pt
        predicted = int(hist[(mptr - 1) % S, (mptr - 1) // S]) if mlen > 0 else -1
        predicted2 = int(hist[s, m2ptr]) if m2len > 0 else -1
        return Match(mptr, mlen, predicted, m2ptr, m2len, predicted2)

    def inputs(self, j: int, c0: int, c1: int, cum: list[int], x: list[int], slots: list[int],
               ctx_hashes: list[int], cmap_index: list[int], m: Match, runs: list[list[int]],
               run_index: list[int]) -> Picked:
        """Fill the mixers' inputs x (tables.INPUTS_R7) for bit j; c0 is 1 followed by the
        bits so far. At a nibble boundary the contexts' buckets are looked up (slots), and
        (revision 5) the order contexts seen before with this nibble are counted."""
        if j in (0, 4):
            key = 0 if j == 0 else c0
            slots[:] = [self.table.find(h, key) for h in ctx_hashes]
            if self.run:
                self.seen = sum(1 for i in T.ORDER_SLOTS if i < self.nctx and self.table.v[slots[i] + 1] & 1023)
        node = c0 if j < 4 else (1 << (j - 4)) | (c0 & ((1 << (j - 4)) - 1))

        # transformer: the bytes below node c0 whose next bit is 1, over all below it
        lo = (c0 - (1 << j)) << (8 - j)
        width = 256 >> j
        n1 = cum[lo + width] - cum[lo + width // 2]
        total = cum[lo + width] - cum[lo]
        p_tf = clamp((n1 * 4096 + (total >> 1)) // total, 1, 4095)
        x[T.IN_TF] = stretch(p_tf)
        p_apm, apm_index = self.apm_tf.p(c1 * 256 + c0, p_tf)
        x[T.IN_TF_APM] = stretch(p_apm)
        o1_index = c1 * 256 + c0
        x[T.IN_O1] = stretch(self.o1.p12(o1_index))
        # revision 5: what each context's run says of this bit (0: nothing; earlier revisions
        # keep no runs), which chooses its input and its context map's row
        rows = [run_expects(length, run_byte, j, c0) for _, _, run_byte, length in runs] or [0] * len(slots)
        for i, b in enumerate(slots):
            e = self.table.v[b + node]
            x[T.ctx_input(i)] = stretch(e >> 20)
            # the same counter through a map by (context, count, p): learns how far
            # a context seen n times with this p is right in this block (from revision 5,
            # and what its run expects)
            cmap_index[i] = (rows[i] * self.nctx + i) * T.CMAP_SIZE + min(e & 1023, T.CMAP_COUNT_CAP) * 64 + (e >> 26)
            x[T.cmap_input(i)] = stretch(self.ctx_map.p12(cmap_index[i]))

        expect = -1  # the match's bit, while its byte agrees with the bits so far
        if m.byte >= 0 and (m.byte + 256) >> (8 - j) == c0:
            expect = (m.byte >> (7 - j)) & 1
        match_index = -1
        x[T.IN_MATCH] = x[T.IN_MATCH_LEN] = 0
        if expect >= 0:
            match_index = min(m.length, T.MATCH_SM_LEN) * 2 + expect
            x[T.IN_MATCH] = stretch(self.match_sm.p12(match_index))
            strength = min(m.length, T.MATCH_STRENGTH_LEN) * T.MATCH_STRENGTH
            x[T.IN_MATCH_LEN] = strength if expect else -strength
        match2_index = -1
        x[T.IN_MATCH2] = 0
        if m.byte2 >= 0 and (m.byte2 + 256) >> (8 - j) == c0:
            match2_index = min(m.length2, T.MATCH_SM_LEN) * 2 + ((m.byte2 >> (7 - j)) & 1)
            x[T.IN_MATCH2] = stretch(self.match2_sm.p12(match2_index))
        x[T.IN_BIAS] = T.BIAS
        for i, (_, _, run_byte, length) in enumerate(runs):  # revision 5: while the run's byte agrees
            run_index[i] = -1
            x[T.run_input(i)] = 0
            if rows[i]:
                run_index[i] = (i * (T.RUN_SM_LEN + 1) + min(length, T.RUN_SM_LEN)) * 2 + ((rows[i] - 1) & 1)
                x[T.run_input(i)] = stretch(self.run_sm.p12(run_index[i]))
        return Picked(node, apm_index, o1_index, match_index, match2_index, expect)

    def mix(self, j: int, c0: int, c: list[int], x: list[int], expect: int, len_bucket: int,
            parity: int, m: Match, byte_sets: tuple[int, int, int]) -> tuple[Mixed, Refined]:
        """Mixers A, B, (revision 2) C and (revision 6: their sets at bit 0, place and kind,
        not -1) D and E, the final mixer and two APMs (four in revision 3) -> (Mixed, whose
        p is the bit's probability; Refined). byte_sets: (place, kind, base_a), the sets
        chosen once per byte; mixer A's set is base_a + c0 (revision 7: base_a by the
        previous byte's class, tables.mix_class; else 0)."""
        place, kind, base_a = byte_sets
        set_a = base_a + c0
        tf_conf = min(abs(x[T.IN_TF]) >> T.TF_CONF_SHIFT, T.TF_CONF_MAX)
        set_b = ((len_bucket if expect >= 0 else 0) * 4 + tf_conf) * 2 + parity
        if self.run:  # revision 5: and by the order contexts seen
            set_b = set_b * T.SEEN_SETS + self.seen
        set_c = hmix(c[1] | (c[2] << 8), T.MIX_C_SEED) >> (32 - T.MIX_C_BITS)
        set_f = j * 2 + parity
        st_a = self.mixer_a.mix(set_a, x)
        st_b = self.mixer_b.mix(set_b, x)
        st_c = self.mixer_c.mix(set_c, x) if self.use_c else 0
        set_d = place + j if place >= 0 else -1
        st_d = self.mixer_d.mix(set_d, x) if place >= 0 else 0
        set_e = kind + j if place >= 0 else -1
        st_e = self.mixer_e.mix(set_e, x) if place >= 0 else 0
        p_f = squash(self.mixer_f.mix(set_f, self.final_inputs(st_a, st_b, x, st_c, st_d, st_e)))
        p1, apm1 = self.apm1.p(c0, p_f)
        p2, apm2 = self.apm2.p(hmix(c[1] | (c[2] << 8), c0) >> (32 - T.APM2_BITS), p_f)
        if self.structure:  # revision 3: by order 1, and by what the match models expect
            p3, apm_o1 = self.apm_o1.p(c[1] * 256 + c0, p_f)
            expect2 = ((m.byte2 >> (7 - j)) & 1) if m.byte2 >= 0 and (m.byte2 + 256) >> (8 - j) == c0 else -1
            p4, apm_match = self.apm_match.p(apm_match_context(expect, expect2, m.length, c0), p_f)
            p = clamp((p_f + p1 + 2 * (p2 + p3 + p4) + 4) >> 3, 1, 4095)
            rf = Refined(apm_o1, apm_match, set_d, st_d, squash(st_d), set_e, st_e, squash(st_e))
        else:
            p = clamp((p_f + p1 + 2 * p2 + 2) >> 2, 1, 4095)
            rf = Refined(-1, -1, -1, 0, 0, -1, 0, 0)
        return Mixed(p, set_a, set_b, set_c, set_f, st_a, st_b, st_c,
                     squash(st_a), squash(st_b), squash(st_c), p_f, apm1, apm2), rf

    def final_inputs(self, st_a: int, st_b: int, x: list[int], st_c: int, st_d: int, st_e: int) -> list[int]:
        """The final mixer's inputs: mixers A and B, the transformer, the bias, mixer C (0
        before revision 2) and from revision 6 mixers D and E."""
        return [st_a, st_b, x[T.IN_TF], T.BIAS, st_c] + ([st_d, st_e] if self.mix_d else [])

    def code(self, p: int, bit: int) -> int:
        """The binary arithmetic coder: encode bit (encoder) or decode one (decoder) with
        P(1) = p / 4096; -> the bit."""
        xmid = self.x1 + ((self.x2 - self.x1) >> 12) * p
        y = (1 if self.x <= xmid else 0) if self.decoding else bit
        if y:
            self.x2 = xmid
        else:
            self.x1 = xmid + 1
        while ((self.x1 ^ self.x2) & 0xFF000000) == 0:
            if self.decoding:
                self.x = ((self.x << 8) & T.MASK32) | self._read()
            else:
                self.out.append(self.x2 >> 24)
            self.x1 = (self.x1 << 8) & T.MASK32
            self.x2 = ((self.x2 << 8) & T.MASK32) | 255
        return y

    def learn(self, x: list[int], y: int, slots: list[int], cmap_index: list[int], k: Picked,
              mx: Mixed, rf: Refined, run_index: list[int]) -> None:
        """Every component learns the coded bit y (k: what inputs read, mx and rf: what mix did)."""
        self.mixer_a.update(mx.set_a, x, y, mx.p_a)
        self.mixer_b.update(mx.set_b, x, y, mx.p_b)
        if self.use_c:
            self.mixer_c.update(mx.set_c, x, y, mx.p_c)
        # (before mixer C its input st_c is 0, so its weight never moves)
        if rf.set_d >= 0:
            self.mixer_d.update(rf.set_d, x, y, rf.p_d)
            self.mixer_e.update(rf.set_e, x, y, rf.p_e)
        self.mixer_f.update(mx.set_f, self.final_inputs(mx.st_a, mx.st_b, x, mx.st_c, rf.st_d, rf.st_e), y,
                            mx.p_f)
        self.apm_tf.update(k.apm_tf, y)
        self.apm1.update(mx.apm1, y)
        self.apm2.update(mx.apm2, y)
        if rf.apm_o1 >= 0:
            self.apm_o1.update(rf.apm_o1, y)
            self.apm_match.update(rf.apm_match, y)
        for i in cmap_index:
            self.ctx_map.update(i, y, T.COUNTER_LIMIT_CMAP)
        self.o1.update(k.o1, y, T.COUNTER_LIMIT_O1)
        for b in slots:
            self.table.update(b + k.node, y, T.COUNTER_LIMIT_CTX)
        if k.match >= 0:
            self.match_sm.update(k.match, y, T.COUNTER_LIMIT_MATCH)
        if k.match2 >= 0:
            self.match2_sm.update(k.match2, y, T.COUNTER_LIMIT_MATCH)
        for i in run_index:
            if i >= 0:
                self.run_sm.update(i, y, T.COUNTER_LIMIT_RUN)

    def advance(self, s: int, t: int, byte: int, m: Match, runs: list[list[int]]) -> None:
        """The stream's state after its byte: (revision 5) the contexts' runs, the match
        copies, (revision 3) its structure, the word, the line, the field."""
        for index, check, run_byte, length in runs:  # the run goes on, or starts again at 1
            length = min(length + 1, T.RUN_COUNT_CAP) if length and run_byte == byte else 1
            self.run_table[index] = (check << 16) | (byte << 8) | length
        ss = self.streams[s]
        mptr, mlen = m.ptr, m.length
        if mlen > 0:
            if m.byte == byte:
                mlen, mptr = min(mlen + 1, T.MATCH_LEN_CAP), mptr + self.S  # next byte of the copy
            elif self.recover and mlen >= self.recover:  # revision 4: recovering, at length 1
                mlen, mptr = 1, mptr + self.S
            else:
                mlen = 0
        ss.match_ptr, ss.match_len = mptr, mlen
        m2ptr, m2len = m.ptr2, m.length2
        if m2len > 0:
            if m.byte2 == byte:
                m2len, m2ptr = min(m2len + 1, T.MATCH_LEN_CAP), m2ptr + 1
            elif self.recover and m2len >= self.recover:
                m2len, m2ptr = 1, m2ptr + 1
            else:
                m2len = 0
        ss.match2_ptr, ss.match2_len = m2ptr, m2len
        if self.structure:
            self.advance_structure(ss, byte)
        if self.nctx > T.CTX_INDIRECT:
            self.advance_heads(s, t, byte)
        if self.nctx > T.CTX_SHAPE_LONG:
            self.advance_shape(ss, byte)
        if is_letter(byte):
            ss.word = hmix(ss.word + 1, byte + 32 if 65 <= byte <= 90 else byte)
        elif byte != 0:  # NULs do not end a word: UTF-16 text keeps its words
            ss.word = 0
        if byte == 10:
            ss.prev_line, ss.line_start = ss.line_start, t + 1
            ss.field, ss.field_hash = 0, 0
            ss.prev_field_start, ss.field_start = ss.field_start, [t + 1] + [-1] * T.FIELDS
        elif is_separator(byte):
            ss.field, ss.field_hash = ss.field + 1, 0
            if ss.field <= T.FIELDS:
                ss.field_start[ss.field] = t + 1
        else:
            ss.field_hash = hmix(ss.field_hash, byte)

    def advance_heads(self, s: int, t: int, byte: int) -> None:
        """Revision 4's after the byte (before the line moves on): the byte joins the two
        that followed the last occurrences of the two bytes before it, and the hash of the
        line's first LINE_HEAD bytes."""
        ss = self.streams[s]
        if t >= 2:
            pair = (self._byte(s, t - 2) << 8) | self._byte(s, t - 1)
            self.indirect[pair] = ((self.indirect[pair] << 8) | byte) & 0xFFFF
        if byte == 10:
            ss.line_head = 0
        elif t - ss.line_start < T.LINE_HEAD:
            ss.line_head = hmix(ss.line_head, byte)

    def advance_shape(self, ss: StreamState, byte: int) -> None:
        """Revision 6's shape after the byte: its class goes on the current run, or starts
        a new one (a new entry of the runs)."""
        sh, k = ss.shape, shape_class(byte)
        if k == sh[-2]:
            sh[-1] += 1
        else:  # each word's oldest entry moves to the next word
            for i in range(T.SHAPE_WORDS - 1, 0, -1):
                sh[i] = ((sh[i] << 8) | (sh[i - 1] >> 24)) & T.MASK32
            sh[0] = ((sh[0] << 8) | k) & T.MASK32
            sh[-2], sh[-1] = k, 1

    def advance_structure(self, ss: StreamState, byte: int) -> None:
        """Revision 3's structure after the byte (part of `advance`, before the word and the
        field move on): brackets outside strings, a "string" (a backslash escapes its
        quote), the word before this one, and the hash of each finished field, kept for
        the line after."""
        if ss.quote:
            if byte == T.QUOTE and not ss.escape:
                ss.quote = 0
            ss.escape = 1 if byte == T.BACKSLASH and not ss.escape else 0
        else:
            ss.escape = 0
            if byte == T.QUOTE:
                ss.quote = 1
            elif is_opener(byte):
                if ss.depth < T.NEST_MAX:
                    ss.nest_stack[ss.depth] = byte
                ss.depth += 1
            elif is_closer(byte) and ss.depth > 0:
                ss.depth -= 1
        if not is_letter(byte) and byte != 0 and ss.word != 0:
            if self.nctx > T.CTX_WORD3:  # revision 7
                ss.prev_word2 = ss.prev_word
            ss.prev_word = ss.word
        if byte == 10 or is_separator(byte):
            if ss.field <= T.FIELDS:
                ss.field_hashes[ss.field] = ss.field_hash
            if byte == 10:
                ss.prev_field_hashes, ss.field_hashes = ss.field_hashes, [0] * (T.FIELDS + 1)
