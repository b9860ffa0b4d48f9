package org.groupnorm.dl4j.kernel;

/**
 * Per-thread work buffers that only ever grow, so a warm kernel allocates nothing per call. Each kind of buffer has
 * its own slot; a caller must not hold two buffers of the same slot at once.
 */
final class Scratch {

    /** Slab buffers (X, DY, WEIGHTS: any thread running slabs) and per-call buffers (the calling thread). */
    enum Slot { X, DY, WEIGHTS, GAMMA, BETA, SUM_DY, SUM_DY_CENTERED, D_GAMMA, D_BETA }

    private static final ThreadLocal<double[][]> DOUBLES =
            ThreadLocal.withInitial(() -> new double[Slot.values().length][0]);
    private static final ThreadLocal<float[][]> FLOATS = ThreadLocal.withInitial(() -> new float[1][0]);

    private Scratch() {
    }

    static double[] doubles(Slot slot, int length) {
        double[][] buffers = DOUBLES.get();
        if (buffers[slot.ordinal()].length < length) {
            buffers[slot.ordinal()] = new double[length];
        }
        return buffers[slot.ordinal()];
    }

    /** Staging for float storage; used only inside one {@link Elements} call. */
    static float[] floats(int length) {
        float[][] buffers = FLOATS.get();
        if (buffers[0].length < length) {
            buffers[0] = new float[length];
        }
        return buffers[0];
    }
}
