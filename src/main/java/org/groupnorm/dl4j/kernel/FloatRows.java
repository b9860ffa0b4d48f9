package org.groupnorm.dl4j.kernel;

import java.nio.FloatBuffer;
import org.groupnorm.dl4j.TensorLayout;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;

/**
 * The fast path for the common case: float32, channels-first, no mask. Then every (example, group) slab is one
 * contiguous run of the array, made of one row of {@code positions} elements per channel.
 *
 * <p>Each slab is streamed through small on-heap blocks ({@value #BLOCK} floats, copied in and out of the array in
 * bulk). Working on a block at a time keeps every loop elementwise over arrays at equal indices, the form HotSpot's
 * auto-vectorizer turns into SIMD code: the reductions add into {@value #BLOCK} float lanes, which are added into double
 * accumulators at least every {@value #BLOCKS_PER_FLUSH} blocks (so no lane sums more than a few dozen terms in float).
 * After the first pass the slab is in cache, so the second pass costs little memory traffic.
 *
 * <p>Forward takes one pass for the statistics (sums of x - shift and (x - shift)^2, with the shift a mean of the
 * slab's first block) and one pass for the output. One-pass moments lose accuracy only when the shift is far from
 * the mean compared to the standard deviation; when it is more than {@link #MAX_SHIFT_IN_STDS} standard deviations
 * away, the pass is repeated with the mean just found as the shift, which makes it exact to rounding. Backward
 * takes per-channel sums of dy and dy * (x - mean) in one pass and writes dx in a second, reusing forward's
 * statistics.
 */
final class FloatRows {

    static final int BLOCK = 256;
    private static final int BLOCKS_PER_FLUSH = 16;
    /** Rows shorter than this are faster through the general kernel (a bulk copy per few elements costs more). */
    static final int MIN_ROW = 16;
    private static final double MAX_SHIFT_IN_STDS = 4;

    private static final ThreadLocal<Blocks> BLOCKS = ThreadLocal.withInitial(Blocks::new);

    private FloatRows() {
    }

    /** Whether this path handles the call: float32, channels first, no mask, rows long enough to stream. */
    static boolean applies(INDArray x, TensorLayout layout, INDArray mask) {
        return x.dataType() == DataType.FLOAT && !layout.channelsLast() && mask == null
                && layout.spatialSize(x.shape()) >= MIN_ROW;
    }

    /**
     * Normalizes slab {@code unit} (= n * G + g) of {@code in} into {@code out} and records its mean and 1/std.
     *
     * @param gamma per-channel scale, or null; {@code beta} is null exactly when gamma is
     */
    static void forward(FloatBuffer in, FloatBuffer out, int unit, int groups, GroupNormKernel.Geometry geo, double[] gamma,
                        double[] beta, double eps, GroupNormKernel.GroupStats stats) {
        Blocks b = BLOCKS.get();
        int base = unit * geo.slabSize;
        double shift = firstBlockMean(in, base, geo.slabSize, b);
        b.moments(in, base, geo.slabSize, (float) shift);
        double meanOffset = b.sum / geo.slabSize;
        double variance = b.sumSquares / geo.slabSize - meanOffset * meanOffset;
        if (meanOffset * meanOffset > MAX_SHIFT_IN_STDS * MAX_SHIFT_IN_STDS * variance) {
            // Too much cancellation: repeat with the mean as the shift (x - shift is then exact in float).
            shift = (float) shift + meanOffset;
            b.moments(in, base, geo.slabSize, (float) shift);
            meanOffset = b.sum / geo.slabSize;
            variance = b.sumSquares / geo.slabSize - meanOffset * meanOffset;
        }
        // NaN anywhere in the slab makes both statistics NaN, and the slab's output NaN, as it should be.
        double mean = (float) shift + meanOffset;
        variance = Math.max(0, variance);
        double rstd = 1.0 / Math.sqrt(variance + eps);
        stats.mean[unit] = mean;
        stats.rstd[unit] = rstd;
        // y = (x - m) * a + c with m the mean rounded to float: x - m is exact for x near m, and the rounding
        // (mean - m) is folded into c in double, so a mean that dwarfs the std costs no accuracy.
        float m = (float) mean;
        double meanResidual = mean - m;
        int g = unit % groups;
        for (int j = 0; j < geo.perGroup; j++) {
            int channel = g * geo.perGroup + j;
            double scale = gamma == null ? rstd : gamma[channel] * rstd;
            double offset = (beta == null ? 0 : beta[channel]) - meanResidual * scale;
            int row = base + j * geo.positions;
            for (int from = 0; from < geo.positions; from += BLOCK) {
                int length = Math.min(BLOCK, geo.positions - from);
                in.get(row + from, b.x, 0, length);
                normalize(b.x, b.out, length, m, (float) scale, (float) offset);
                out.put(row + from, b.out, 0, length);
            }
        }
    }

    /**
     * dx for slab {@code unit} from dy and forward's statistics; stores the slab's per-channel sums of dy and of
     * dy * (x - mean) at [n * C + c] for the parameter gradients.
     */
    static void backward(FloatBuffer in, FloatBuffer gradOut, FloatBuffer gradIn, int unit, int groups, GroupNormKernel.Geometry geo,
                         double[] gamma, GroupNormKernel.GroupStats stats, double[] sumDy, double[] sumDyCentered) {
        Blocks b = BLOCKS.get();
        int base = unit * geo.slabSize;
        int n = unit / groups;
        int g = unit % groups;
        double mean = stats.mean[unit];
        double rstd = stats.rstd[unit];
        float m = (float) mean;
        double meanResidual = mean - m;
        double weightedDy = 0;          // sum over the slab of gamma_c * dy
        double weightedDyCentered = 0;  // sum over the slab of gamma_c * dy * (x - mean)
        for (int j = 0; j < geo.perGroup; j++) {
            int channel = g * geo.perGroup + j;
            b.channelSums(in, gradOut, base + j * geo.positions, geo.positions, m);
            double dyCentered = b.sumSquares - meanResidual * b.sum;
            sumDy[n * geo.channels + channel] = b.sum;
            sumDyCentered[n * geo.channels + channel] = dyCentered;
            double scale = gamma == null ? 1 : gamma[channel];
            weightedDy += scale * b.sum;
            weightedDyCentered += scale * dyCentered;
        }
        double meanTerm = rstd * weightedDy / geo.slabSize;
        double centeredTerm = rstd * rstd * rstd * weightedDyCentered / geo.slabSize;
        // dx = rstd * gamma_c * dy - meanTerm - (x - mean) * centeredTerm, with x - mean = (x - m) - meanResidual.
        float xCoefficient = (float) -centeredTerm;
        float constant = (float) (meanResidual * centeredTerm - meanTerm);
        for (int j = 0; j < geo.perGroup; j++) {
            float dyCoefficient = (float) (rstd * (gamma == null ? 1 : gamma[g * geo.perGroup + j]));
            int row = base + j * geo.positions;
            for (int from = 0; from < geo.positions; from += BLOCK) {
                int length = Math.min(BLOCK, geo.positions - from);
                in.get(row + from, b.x, 0, length);
                gradOut.get(row + from, b.dy, 0, length);
                inputGradient(b.x, b.dy, b.out, length, m, dyCoefficient, xCoefficient, constant);
                gradIn.put(row + from, b.out, 0, length);
            }
        }
    }

    private static double firstBlockMean(FloatBuffer in, int base, int size, Blocks b) {
        int length = Math.min(BLOCK, size);
        in.get(base, b.x, 0, length);
        double sum = 0;
        for (int i = 0; i < length; i++) {
            sum += b.x[i];
        }
        return sum / length;
    }

    private static void normalize(float[] x, float[] y, int length, float mean, float scale, float offset) {
        for (int i = 0; i < length; i++) {
            y[i] = (x[i] - mean) * scale + offset;
        }
    }

    private static void inputGradient(float[] x, float[] dy, float[] dx, int length, float mean, float dyCoefficient,
                                      float xCoefficient, float constant) {
        for (int i = 0; i < length; i++) {
            dx[i] = dyCoefficient * dy[i] + xCoefficient * (x[i] - mean) + constant;
        }
    }

    /** One thread's blocks and float lanes, and the two double sums the last reduction left. */
    private static final class Blocks {
        final float[] x = new float[BLOCK];
        final float[] dy = new float[BLOCK];
        final float[] out = new float[BLOCK];
        final float[] lanesA = new float[BLOCK];
        final float[] lanesB = new float[BLOCK];
        double sum;
        double sumSquares;

        /** sum = sum of (x - shift), sumSquares = sum of (x - shift)^2 over [base, base + size). */
        void moments(FloatBuffer in, int base, int size, float shift) {
            clear();
            int blocks = 0;
            for (int from = 0; from < size; from += BLOCK) {
                int length = Math.min(BLOCK, size - from);
                in.get(base + from, x, 0, length);
                addMoments(x, lanesA, lanesB, length, shift);
                if (++blocks % BLOCKS_PER_FLUSH == 0) {
                    flush();
                }
            }
            flush();
        }

        /** sum = sum of dy, sumSquares = sum of dy * (x - shift) over one channel row. */
        void channelSums(FloatBuffer in, FloatBuffer gradOut, int row, int length, float shift) {
            clear();
            int blocks = 0;
            for (int from = 0; from < length; from += BLOCK) {
                int count = Math.min(BLOCK, length - from);
                in.get(row + from, x, 0, count);
                gradOut.get(row + from, dy, 0, count);
                addGradientSums(x, dy, lanesA, lanesB, count, shift);
                if (++blocks % BLOCKS_PER_FLUSH == 0) {
                    flush();
                }
            }
            flush();
        }

        private void clear() {
            sum = 0;
            sumSquares = 0;
        }

        private void flush() {
            for (int i = 0; i < BLOCK; i++) {
                sum += lanesA[i];
                sumSquares += lanesB[i];
                lanesA[i] = 0;
                lanesB[i] = 0;
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
                                            float shift) {
            for (int i = 0; i < length; i++) {
                sums[i] += dy[i];
                products[i] += dy[i] * (x[i] - shift);
            }
        }
    }
}
