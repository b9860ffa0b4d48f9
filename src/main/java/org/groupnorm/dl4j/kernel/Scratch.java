package org.groupnorm.dl4j.kernel;

import java.nio.Buffer;
import java.util.Arrays;

/**
 * Per-thread work buffers that only ever grow, so a warm kernel allocates nothing per call. Each kind of buffer has
 * its own slot; a caller must not hold two buffers of the same slot at once.
 */
final class Scratch {

    /**
     * Double buffers. Slab buffers (X, DY, WEIGHTS), per-channel coefficients (SCALE ... CONSTANT) and a block's
     * per-group sums (GROUP_SUMS, GROUP_SQUARES): any thread running units; per-call buffers (GAMMA ... D_BETA): the
     * calling thread.
     */
    enum Slot {
        X, DY, WEIGHTS, SCALE, OFFSET, DY_SCALE, X_SCALE, CONSTANT, GROUP_SUMS, GROUP_SQUARES,
        GAMMA, BETA, SUM_DY, SUM_DY_CENTERED, D_GAMMA, D_BETA
    }

    /**
     * Float buffers: staging inside one {@link Elements} call, channels-last per-column coefficients and sums, and
     * the Vector API row loops' partial sums.
     */
    enum FloatSlot {
        STAGING, SHIFT, ANCHOR, SCALE, OFFSET, DY_SCALE, X_SCALE, CONSTANT, SUMS, SQUARES, PARTIAL_SUMS,
        PARTIAL_PRODUCTS
    }

    private static final ThreadLocal<double[][]> DOUBLES =
            ThreadLocal.withInitial(() -> new double[Slot.values().length][0]);
    private static final ThreadLocal<float[][]> FLOATS =
            ThreadLocal.withInitial(() -> new float[FloatSlot.values().length][0]);

    private Scratch() {
    }

    static double[] doubles(Slot slot, int length) {
        double[][] buffers = DOUBLES.get();
        if (buffers[slot.ordinal()].length < length) {
            buffers[slot.ordinal()] = new double[length];
        }
        return buffers[slot.ordinal()];
    }

    private static final ThreadLocal<short[][]> SHORTS = ThreadLocal.withInitial(() -> new short[1][0]);

    /** Staging for half-precision storage; used only inside one {@link Elements} call. */
    static short[] shorts(int length) {
        short[][] buffers = SHORTS.get();
        if (buffers[0].length < length) {
            buffers[0] = new short[length];
        }
        return buffers[0];
    }

    static float[] floats(FloatSlot slot, int length) {
        float[][] buffers = FLOATS.get();
        if (buffers[slot.ordinal()].length < length) {
            buffers[slot.ordinal()] = new float[length];
        }
        return buffers[slot.ordinal()];
    }

    /** Float32 copies of slabs or blocks ({@link StagedArray}), in the loop set's own buffers: x, dy and dx. */
    enum BufferSlot { X, DY, DX }

    private static final ThreadLocal<LoopBuffers> LOOP_BUFFERS = ThreadLocal.withInitial(LoopBuffers::new);

    /** A buffer of at least {@code floats} floats that {@code loops} allocated. */
    @SuppressWarnings("unchecked")   // allocated by these loops (see LoopBuffers.fit): it is their B
    static <B extends Buffer> B buffer(FloatLoops<B> loops, BufferSlot slot, int floats) {
        return (B) LOOP_BUFFERS.get().fit(loops, slot, floats);
    }

    /** One thread's loop buffers and the loop set that allocated them (a different one starts afresh). */
    private static final class LoopBuffers {
        private FloatLoops<?> owner;
        private final Buffer[] buffers = new Buffer[BufferSlot.values().length];
        private final int[] floats = new int[BufferSlot.values().length];

        Buffer fit(FloatLoops<?> loops, BufferSlot slot, int length) {
            if (owner != loops) {
                owner = loops;
                Arrays.fill(buffers, null);
                Arrays.fill(floats, 0);
            }
            int i = slot.ordinal();
            if (buffers[i] == null || floats[i] < length) {
                buffers[i] = loops.allocate(length);
                floats[i] = length;
            }
            return buffers[i];
        }
    }
}
