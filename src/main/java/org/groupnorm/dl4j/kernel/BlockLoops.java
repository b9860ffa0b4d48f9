package org.groupnorm.dl4j.kernel;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.FloatBuffer;
import java.util.Arrays;
import org.nd4j.linalg.api.ndarray.INDArray;

/**
 * {@link FloatLoops} in plain Java, for JVMs without the Vector API. The elements are streamed through small on-heap
 * blocks ({@value #BLOCK} floats, copied in and out of the array in bulk) so that every loop runs over arrays at equal
 * indices: the only form HotSpot's auto-vectorizer (C2, JDK 17) turns into SIMD code. A loop that reads
 * {@code x[offset + i]} or adds into a scalar stays scalar, about eight times slower. The reductions therefore add
 * into {@value #BLOCK} float lanes, which are added into double at least every {@value #BLOCKS_PER_FLUSH} blocks.
 * Channels-last rows are copied side by side into bundles of about {@value #BUNDLE} floats and combined with
 * per-column coefficient arrays repeated once per row, at equal indices, for the same reason.
 */
final class BlockLoops implements FloatLoops<FloatBuffer> {

    private static final int BLOCK = 256;
    private static final int BLOCKS_PER_FLUSH = 16;
    /**
     * Floats in a bundle of channels-last rows. A row is only as long as its block is wide (tens of channels), and
     * C2 likely runs a loop that short mostly in its scalar pre- and post-loops: one row at a time, channels-last
     * forward+backward took 4.3x channels-first at 2x256x56x56 (80-channel blocks; docs/PERFORMANCE.md). Rows are
     * processed side by side in bundles instead, against per-column coefficients repeated once per row. As many
     * floats as a channels-first block: bundles of 1024 measured slower at 8x64x56x56 in a throwaway harness.
     */
    private static final int BUNDLE = BLOCK;
    /** Repeated coefficient arrays a row loop needs at most: four of its own and the gate's two. */
    private static final int REPEAT_SLOTS = 6;

    private static final ThreadLocal<Blocks> BLOCKS = ThreadLocal.withInitial(Blocks::new);

    @Override
    public FloatBuffer view(INDArray array) {
        return Elements.floats(array);
    }

    /** Off-heap like the arrays' views, so that the loops only ever see one buffer class. */
    @Override
    public FloatBuffer allocate(int floats) {
        return ByteBuffer.allocateDirect(floats * Float.BYTES).order(ByteOrder.nativeOrder()).asFloatBuffer();
    }

    @Override
    public void copy(FloatBuffer from, int fromIndex, FloatBuffer to, int toIndex, int length) {
        to.put(toIndex, from, fromIndex, length);
    }

    @Override
    public void clear(FloatBuffer to, int from, int length) {
        for (int i = from; i < from + length; i++) {
            to.put(i, 0f);
        }
    }

    @Override
    public void widenHalves(ByteBuffer halves, int from, FloatBuffer floats, int to, int length) {
        Blocks b = BLOCKS.get();
        for (int start = 0; start < length; start += BLOCK) {
            int count = Math.min(BLOCK, length - start);
            for (int i = 0; i < count; i++) {
                b.x[i] = Elements.halfValue(halves.getShort((from + start + i) * Short.BYTES));
            }
            floats.put(to + start, b.x, 0, count);
        }
    }

    @Override
    public void narrowToHalves(FloatBuffer floats, int from, ByteBuffer halves, int to, int length) {
        Blocks b = BLOCKS.get();
        for (int start = 0; start < length; start += BLOCK) {
            int count = Math.min(BLOCK, length - start);
            floats.get(from + start, b.x, 0, count);
            for (int i = 0; i < count; i++) {
                halves.putShort((to + start + i) * Short.BYTES, Elements.floatToHalf(b.x[i]));
            }
        }
    }

    @Override
    public void moments(FloatBuffer x, int from, int length, float shift, Sums sums) {
        Blocks b = BLOCKS.get();
        sums.clear();
        int blocks = 0;
        for (int start = from; start < from + length; start += BLOCK) {
            int count = Math.min(BLOCK, from + length - start);
            x.get(start, b.x, 0, count);
            addMoments(b.x, b.lanesA, b.lanesB, count, shift);
            if (++blocks % BLOCKS_PER_FLUSH == 0) {
                b.flushInto(sums);
            }
        }
        b.flushInto(sums);
    }

    @Override
    public void normalize(FloatBuffer x, FloatBuffer y, int from, int length, float mean, float scale, float offset,
                          FusedActivation activation) {
        Blocks b = BLOCKS.get();
        for (int start = from; start < from + length; start += BLOCK) {
            int count = Math.min(BLOCK, from + length - start);
            x.get(start, b.x, 0, count);
            normalize(b.x, b.out, count, mean, scale, offset);
            if (activation.isPiecewiseLinear()) {
                gateValues(b.out, activation.negativeSlope(), count);
            } else if (!activation.isIdentity()) {
                for (int i = 0; i < count; i++) {
                    b.out[i] = (float) activation.apply(b.out[i]);
                }
            }
            y.put(start, b.out, 0, count);
        }
    }

    @Override
    public void activationGradient(FloatBuffer x, FloatBuffer dy, FloatBuffer g, int from, int length, float mean,
                                   float scale, float offset, FusedActivation activation) {
        Blocks b = BLOCKS.get();
        for (int start = from; start < from + length; start += BLOCK) {
            int count = Math.min(BLOCK, from + length - start);
            x.get(start, b.x, 0, count);
            dy.get(start, b.dy, 0, count);
            normalize(b.x, b.out, count, mean, scale, offset);
            for (int i = 0; i < count; i++) {
                b.dy[i] *= (float) activation.derivative(b.out[i]);
            }
            g.put(start, b.dy, 0, count);
        }
    }

    @Override
    public void gradientSums(FloatBuffer x, FloatBuffer dy, int from, int length, float mean, Sums sums) {
        sumsOfGradient(x, dy, from, length, mean, null, sums);
    }

    @Override
    public void inputGradient(FloatBuffer x, FloatBuffer dy, FloatBuffer dx, int from, int length, float mean,
                              float dyCoefficient, float xCoefficient, float constant) {
        inputGradientOf(x, dy, dx, from, length, mean, null, dyCoefficient, xCoefficient, constant);
    }

    @Override
    public void gatedGradientSums(FloatBuffer x, FloatBuffer dy, int from, int length, float mean, float scale,
                                  float offset, FusedActivation activation, Sums sums) {
        sumsOfGradient(x, dy, from, length, mean, new Gate(scale, offset, activation), sums);
    }

    @Override
    public void gatedInputGradient(FloatBuffer x, FloatBuffer dy, FloatBuffer dx, int from, int length, float mean,
                                   float scale, float offset, FusedActivation activation, float dyCoefficient,
                                   float xCoefficient, float constant) {
        inputGradientOf(x, dy, dx, from, length, mean, new Gate(scale, offset, activation), dyCoefficient,
                xCoefficient, constant);
    }

    /** A fused ReLU/LeakyReLU's gate: the pre-activation's coefficients and the activation. */
    private record Gate(float scale, float offset, FusedActivation activation) {

        float negativeSlope() {
            return activation.negativeSlope();
        }

        float slopeThreshold() {
            return activation.slopeThreshold();
        }
    }

    /** {@link #gradientSums} of dy, or of dy through {@code gate} when there is one. */
    private static void sumsOfGradient(FloatBuffer x, FloatBuffer dy, int from, int length, float mean, Gate gate,
                                       Sums sums) {
        Blocks b = BLOCKS.get();
        sums.clear();
        int blocks = 0;
        for (int start = from; start < from + length; start += BLOCK) {
            int count = Math.min(BLOCK, from + length - start);
            x.get(start, b.x, 0, count);
            dy.get(start, b.dy, 0, count);
            if (gate != null) {
                gate(b.x, b.dy, count, mean, gate);
            }
            addGradientSums(b.x, b.dy, b.lanesA, b.lanesB, count, mean);
            if (++blocks % BLOCKS_PER_FLUSH == 0) {
                b.flushInto(sums);
            }
        }
        b.flushInto(sums);
    }

    /** {@link #inputGradient} of dy, or of dy through {@code gate} when there is one. */
    private static void inputGradientOf(FloatBuffer x, FloatBuffer dy, FloatBuffer dx, int from, int length,
                                        float mean, Gate gate, float dyCoefficient, float xCoefficient,
                                        float constant) {
        Blocks b = BLOCKS.get();
        for (int start = from; start < from + length; start += BLOCK) {
            int count = Math.min(BLOCK, from + length - start);
            x.get(start, b.x, 0, count);
            dy.get(start, b.dy, 0, count);
            if (gate != null) {
                gate(b.x, b.dy, count, mean, gate);
            }
            inputGradient(b.x, b.dy, b.out, count, mean, dyCoefficient, xCoefficient, constant);
            dx.put(start, b.out, 0, count);
        }
    }

    @Override
    public void rowMoments(FloatBuffer x, int from, int stride, int rows, int width, float[] shift, float[] sums,
                           float[] squares) {
        Blocks b = BLOCKS.get();
        int perBundle = rowsPerBundle(width, rows);
        float[] bundle = b.bundle(perBundle * width);
        float[] shifts = b.repeated(0, shift, width, perBundle);
        float[] partialSums = b.partialSums(perBundle * width);
        float[] partialSquares = b.partialProducts(perBundle * width);
        Arrays.fill(sums, 0, width, 0);
        Arrays.fill(squares, 0, width, 0);
        for (int r = 0, bundles = 1; r < rows; r += perBundle, bundles++) {
            int length = read(x, from + r * stride, stride, Math.min(perBundle, rows - r), width, bundle);
            addRowMoments(bundle, shifts, partialSums, partialSquares, length);
            if (bundles % ROWS_PER_PARTIAL == 0 || r + perBundle >= rows) {
                foldInto(partialSums, sums, width, perBundle);
                foldInto(partialSquares, squares, width, perBundle);
            }
        }
    }

    @Override
    public void rowNormalize(FloatBuffer x, FloatBuffer y, int from, int stride, int rows, int width, float[] anchor,
                             float[] scale, float[] offset, RowGate gate) {
        Blocks b = BLOCKS.get();
        int perBundle = rowsPerBundle(width, rows);
        float[] bundle = b.bundle(perBundle * width);
        float[] anchors = b.repeated(0, anchor, width, perBundle);
        float[] scales = b.repeated(1, scale, width, perBundle);
        float[] offsets = b.repeated(2, offset, width, perBundle);
        for (int r = 0; r < rows; r += perBundle) {
            int count = Math.min(perBundle, rows - r);
            int length = read(x, from + r * stride, stride, count, width, bundle);
            normalizeRow(bundle, anchors, scales, offsets, length);
            if (gate != null) {
                gateValues(bundle, gate.negativeSlope(), length);
            }
            write(bundle, count, width, y, from + r * stride, stride);
        }
    }

    @Override
    public void rowGradientSums(FloatBuffer x, FloatBuffer dy, int from, int stride, int rows, int width,
                                float[] anchor, RowGate gate, float[] sums, float[] products) {
        Blocks b = BLOCKS.get();
        int perBundle = rowsPerBundle(width, rows);
        float[] bundle = b.bundle(perBundle * width);
        float[] gradBundle = b.gradBundle(perBundle * width);
        float[] anchors = b.repeated(0, anchor, width, perBundle);
        RowGate gated = gate == null ? null : b.repeated(gate, width, perBundle);
        float[] partialSums = b.partialSums(perBundle * width);
        float[] partialProducts = b.partialProducts(perBundle * width);
        Arrays.fill(sums, 0, width, 0);
        Arrays.fill(products, 0, width, 0);
        for (int r = 0, bundles = 1; r < rows; r += perBundle, bundles++) {
            int count = Math.min(perBundle, rows - r);
            int length = read(x, from + r * stride, stride, count, width, bundle);
            read(dy, from + r * stride, stride, count, width, gradBundle);
            if (gated != null) {
                gateRow(bundle, gradBundle, anchors, gated, length);
            }
            addRowGradientSums(bundle, gradBundle, anchors, partialSums, partialProducts, length);
            if (bundles % ROWS_PER_PARTIAL == 0 || r + perBundle >= rows) {
                foldInto(partialSums, sums, width, perBundle);
                foldInto(partialProducts, products, width, perBundle);
            }
        }
    }

    @Override
    public void rowInputGradient(FloatBuffer x, FloatBuffer dy, FloatBuffer dx, int from, int stride, int rows,
                                 int width, float[] anchor, RowGate gate, float[] dyScale, float[] xScale,
                                 float[] constant) {
        Blocks b = BLOCKS.get();
        int perBundle = rowsPerBundle(width, rows);
        float[] bundle = b.bundle(perBundle * width);
        float[] gradBundle = b.gradBundle(perBundle * width);
        float[] anchors = b.repeated(0, anchor, width, perBundle);
        float[] dyScales = b.repeated(1, dyScale, width, perBundle);
        float[] xScales = b.repeated(2, xScale, width, perBundle);
        float[] constants = b.repeated(3, constant, width, perBundle);
        RowGate gated = gate == null ? null : b.repeated(gate, width, perBundle);
        for (int r = 0; r < rows; r += perBundle) {
            int count = Math.min(perBundle, rows - r);
            int length = read(x, from + r * stride, stride, count, width, bundle);
            read(dy, from + r * stride, stride, count, width, gradBundle);
            if (gated != null) {
                gateRow(bundle, gradBundle, anchors, gated, length);
            }
            inputGradientRow(bundle, gradBundle, anchors, dyScales, xScales, constants, length);
            write(bundle, count, width, dx, from + r * stride, stride);
        }
    }

    /** How many rows go into one bundle: enough for a long loop, no more than there are. */
    private static int rowsPerBundle(int width, int rows) {
        return Math.max(1, Math.min(rows, BUNDLE / width));
    }

    /**
     * Copies {@code count} rows of {@code width} floats, {@code stride} apart, side by side into the bundle: in one
     * copy when they are adjacent (a block as wide as the example).
     */
    private static int read(FloatBuffer source, int from, int stride, int count, int width, float[] bundle) {
        if (stride == width) {
            source.get(from, bundle, 0, count * width);
        } else {
            for (int i = 0; i < count; i++) {
                source.get(from + i * stride, bundle, i * width, width);
            }
        }
        return count * width;
    }

    /** Copies the bundle's first {@code count} rows back to rows {@code stride} apart, as {@link #read} reads them. */
    private static void write(float[] bundle, int count, int width, FloatBuffer target, int from, int stride) {
        if (stride == width) {
            target.put(from, bundle, 0, count * width);
        } else {
            for (int i = 0; i < count; i++) {
                target.put(from + i * stride, bundle, i * width, width);
            }
        }
    }

    /** Adds each of the bundle's {@code rows} partial rows into total, column by column, and clears them. */
    private static void foldInto(float[] partial, float[] total, int width, int rows) {
        for (int i = 0; i < rows; i++) {
            for (int c = 0; c < width; c++) {
                total[c] += partial[i * width + c];
                partial[i * width + c] = 0;
            }
        }
    }

    private static void addRowMoments(float[] x, float[] shift, float[] sums, float[] squares, int length) {
        for (int c = 0; c < length; c++) {
            float d = x[c] - shift[c];
            sums[c] += d;
            squares[c] += d * d;
        }
    }

    private static void normalizeRow(float[] x, float[] anchor, float[] scale, float[] offset, int length) {
        for (int c = 0; c < length; c++) {
            x[c] = (x[c] - anchor[c]) * scale[c] + offset[c];
        }
    }

    /*
     * The gates are written with Math.max/min, which C2 vectorizes, instead of a comparison, which it compiles to a
     * branch per element (JDK 17 does not vectorize a conditional): with the pre-activation's sign random, the branch
     * mispredicted half the time and GN+ReLU forward+backward took 14.5 ms at 8x64x56x56, 11x plain GroupNorm;
     * written this way, 2.5 ms, 1.7x (docs/PERFORMANCE.md).
     */

    /** A ReLU/LeakyReLU applied to values in place: v for v > 0, negativeSlope * v otherwise (each term exact). */
    private static void gateValues(float[] values, float negativeSlope, int length) {
        for (int i = 0; i < length; i++) {
            values[i] = Math.max(values[i], 0f) + negativeSlope * Math.min(values[i], 0f);
        }
    }

    /** dy (the bundle), in place, through the gate at the bundle's pre-activation. */
    private static void gateRow(float[] x, float[] dy, float[] anchor, RowGate gate, int length) {
        float[] scale = gate.scale();
        float[] offset = gate.offset();
        float negativeSlope = gate.negativeSlope();
        float slopeThreshold = gate.slopeThreshold();
        for (int c = 0; c < length; c++) {
            dy[c] *= gateFactor((x[c] - anchor[c]) * scale[c] + offset[c], negativeSlope, slopeThreshold);
        }
    }

    private static void addRowGradientSums(float[] x, float[] dy, float[] anchor, float[] sums, float[] products,
                                           int length) {
        for (int c = 0; c < length; c++) {
            sums[c] += dy[c];
            products[c] += dy[c] * (x[c] - anchor[c]);
        }
    }

    /** Writes dx over x (the row buffer): each element is read before it is replaced. */
    private static void inputGradientRow(float[] x, float[] dy, float[] anchor, float[] dyScale, float[] xScale,
                                         float[] constant, int length) {
        for (int c = 0; c < length; c++) {
            x[c] = dyScale[c] * dy[c] + xScale[c] * (x[c] - anchor[c]) + constant[c];
        }
    }

    private static void addMoments(float[] x, float[] sums, float[] squares, int length, float shift) {
        for (int i = 0; i < length; i++) {
            float d = x[i] - shift;
            sums[i] += d;
            squares[i] += d * d;
        }
    }

    private static void addGradientSums(float[] x, float[] dy, float[] sums, float[] products, int length,
                                        float mean) {
        for (int i = 0; i < length; i++) {
            sums[i] += dy[i];
            products[i] += dy[i] * (x[i] - mean);
        }
    }

    private static void normalize(float[] x, float[] y, int length, float mean, float scale, float offset) {
        for (int i = 0; i < length; i++) {
            y[i] = (x[i] - mean) * scale + offset;
        }
    }

    /** dy, in place, through a ReLU/LeakyReLU at the pre-activation forward computed. */
    private static void gate(float[] x, float[] dy, int length, float mean, Gate gate) {
        float scale = gate.scale();
        float offset = gate.offset();
        float negativeSlope = gate.negativeSlope();
        float slopeThreshold = gate.slopeThreshold();
        for (int i = 0; i < length; i++) {
            dy[i] *= gateFactor((x[i] - mean) * scale + offset, negativeSlope, slopeThreshold);
        }
    }

    /**
     * A ReLU/LeakyReLU's derivative at {@code pre}: exactly 1 above {@code slopeThreshold}, exactly negativeSlope at
     * or below it. The step {@code positive} is 1 for pre &gt; slopeThreshold (their difference is exact near them,
     * and the smallest positive float times 2^254 is still past 1) and 0 otherwise.
     */
    private static float gateFactor(float pre, float negativeSlope, float slopeThreshold) {
        float positive = Math.min(Math.max((pre - slopeThreshold) * 0x1p127f * 0x1p127f, 0f), 1f);
        return positive + (1f - positive) * negativeSlope;
    }

    private static void inputGradient(float[] x, float[] dy, float[] dx, int length, float mean, float dyCoefficient,
                                      float xCoefficient, float constant) {
        for (int i = 0; i < length; i++) {
            dx[i] = dyCoefficient * dy[i] + xCoefficient * (x[i] - mean) + constant;
        }
    }

    /** One thread's blocks and float lanes. */
    private static final class Blocks {
        final float[] x = new float[BLOCK];
        final float[] dy = new float[BLOCK];
        final float[] out = new float[BLOCK];
        final float[] lanesA = new float[BLOCK];
        final float[] lanesB = new float[BLOCK];
        private float[] bundle = new float[0];
        private float[] gradBundle = new float[0];
        private float[] partialSums = new float[0];
        private float[] partialProducts = new float[0];
        private final float[][] repeats = new float[REPEAT_SLOTS][0];

        /** A bundle of channels-last rows, at least {@code length} floats (grows once per length). */
        float[] bundle(int length) {
            return bundle = atLeast(bundle, length);
        }

        float[] gradBundle(int length) {
            return gradBundle = atLeast(gradBundle, length);
        }

        /** Column partial sums, zero between uses. */
        float[] partialSums(int length) {
            return partialSums = atLeast(partialSums, length);
        }

        float[] partialProducts(int length) {
            return partialProducts = atLeast(partialProducts, length);
        }

        /**
         * {@code source}'s first {@code width} values, {@code times} times over, in buffer {@code slot} (read only:
         * source itself when once is enough, as for rows of a bundle's length or longer).
         */
        float[] repeated(int slot, float[] source, int width, int times) {
            if (times == 1) {
                return source;
            }
            float[] target = repeats[slot] = atLeast(repeats[slot], width * times);
            for (int i = 0; i < times; i++) {
                System.arraycopy(source, 0, target, i * width, width);
            }
            return target;
        }

        /** The gate with its per-column coefficients repeated, in the last two slots. */
        RowGate repeated(RowGate gate, int width, int times) {
            return new RowGate(repeated(REPEAT_SLOTS - 2, gate.scale(), width, times),
                    repeated(REPEAT_SLOTS - 1, gate.offset(), width, times), gate.activation());
        }

        private static float[] atLeast(float[] buffer, int length) {
            return buffer.length >= length ? buffer : new float[length];
        }

        /** Adds the lanes into the sums (in double) and clears them. */
        void flushInto(Sums sums) {
            for (int i = 0; i < BLOCK; i++) {
                sums.plain += lanesA[i];
                sums.weighted += lanesB[i];
                lanesA[i] = 0;
                lanesB[i] = 0;
            }
        }
    }
}
