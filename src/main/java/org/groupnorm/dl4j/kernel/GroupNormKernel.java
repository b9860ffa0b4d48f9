package org.groupnorm.dl4j.kernel;

import java.util.Arrays;
import org.groupnorm.dl4j.TensorLayout;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.api.shape.Shape;
import org.nd4j.linalg.factory.Nd4j;

/**
 * The CPU fast path: GroupNorm forward and analytic backward as plain loops, with the same contract as
 * {@link org.groupnorm.dl4j.GroupNorm#groupNorm} (and the tests hold the two to the same results).
 *
 * <p>The unit of work is one (example, group) slab; slabs run in parallel ({@link Parallel}). Backward reuses the
 * forward's mean and 1/std instead of recomputing them. Two slab implementations share that frame:
 * <ul>
 *   <li>{@link FloatRows}, for float32 channels-first input without a mask (the case networks run): one-pass
 *   moments with a shift, SIMD loops (Vector API when the JVM enables it, else loops HotSpot vectorizes);</li>
 *   <li>the general path here, for every other case (channels-last, masks, float64, very short rows): the slab is
 *   read once into a {@code double[]} buffer that stays in cache, the statistics take two passes over that buffer (a
 *   shifted sum for the mean, then the sum of squared deviations), and the output is written in one pass. All
 *   arithmetic is in double.</li>
 * </ul>
 *
 * <p>Arrays must be c-contiguous host arrays of FLOAT or DOUBLE ({@link #supports}); anything else takes the SameDiff
 * path.
 */
public final class GroupNormKernel {

    private GroupNormKernel() {
    }

    /**
     * True on the CPU backend for FLOAT/DOUBLE arrays under 2 GiB: the kernel reads host memory through
     * {@link java.nio.ByteBuffer}s, which are int-indexed by byte.
     */
    public static boolean supports(INDArray x) {
        return Nd4j.getEnvironment().isCPU() && Elements.supports(x.dataType())
                && x.length() * x.dataType().width() <= Integer.MAX_VALUE;
    }

    /** Whether float32 channels-first calls run on the Vector API's SIMD loops (see {@link FloatRows}). */
    public static boolean usesVectorApi() {
        return FloatRows.usesVectorApi();
    }

    /**
     * True when the kernel can address the array where it is (else the caller passes a c-order copy): its elements
     * are contiguous in c order. A vector's order flag does not matter (DL4J's parameter views are 'f' vectors).
     */
    public static boolean isDirectlyAddressable(INDArray array) {
        boolean cOrder = array.ordering() == 'c' || array.rank() <= 1;
        return cOrder && Shape.hasDefaultStridesForShape(array) && array.elementWiseStride() == 1;
    }

    /**
     * y = GroupNorm(x). Fills {@code stats} with each (example, group)'s mean and 1/sqrt(var + eps) for
     * {@link #backward}.
     *
     * @param gammaArray per-channel scale, length C, or null for none (scale 1)
     * @param betaArray  per-channel shift, length C, or null for none (shift 0)
     * @param mask  [N, S] with 1 for present and 0 for padded positions, or null
     */
    public static void forward(INDArray x, INDArray gammaArray, INDArray betaArray, INDArray mask, int groups,
                               double eps, TensorLayout layout, INDArray y, GroupStats stats) {
        double[] gamma = gammaArray == null ? null : vector(gammaArray, Scratch.Slot.GAMMA);
        double[] beta = betaArray == null ? null : vector(betaArray, Scratch.Slot.BETA);
        Geometry geo = new Geometry(x.shape(), layout, groups);
        stats.resize(geo.examples * groups);
        if (FloatRows.applies(x, layout, mask)) {
            FloatRows.forward(x, y, groups, geo, gamma, beta, eps, stats);
        } else {
            Elements in = Elements.of(x);
            Elements out = Elements.of(y);
            double[] masks = maskValues(mask);
            Parallel.forEach(geo.examples * groups, x.length(),
                    unit -> forwardSlab(in, out, masks, unit, groups, geo, gamma, beta, eps, stats));
        }
    }

    /** The general path's forward for one (example, group) slab: any layout, float or double, masks. */
    private static void forwardSlab(Elements in, Elements out, double[] masks, int unit, int groups, Geometry geo,
                                    double[] gamma, double[] beta, double eps, GroupStats stats) {
        int n = unit / groups;
        int g = unit % groups;
        double[] xs = Scratch.doubles(Scratch.Slot.X, geo.slabSize);
        double[] weights = masks == null ? null : geo.weights(masks, n);
        geo.read(in, n, g, xs);
        if (weights != null) {
            dropPadding(xs, weights, geo.slabSize);
        }
        int count = weights == null ? geo.slabSize : presentCount(weights, geo.slabSize);
        double mean = count == 0 ? 0 : mean(xs, weights, geo.slabSize, count);
        double variance = count == 0 ? 0 : variance(xs, weights, geo.slabSize, count, mean);
        double rstd = 1.0 / Math.sqrt(variance + eps);
        stats.mean[unit] = mean;
        stats.rstd[unit] = rstd;
        for (int j = 0; j < geo.perGroup; j++) {
            int channel = g * geo.perGroup + j;
            double scale = gamma == null ? rstd : gamma[channel] * rstd;
            double shift = beta == null ? 0 : beta[channel];
            for (int s = 0; s < geo.positions; s++) {
                int i = geo.index(j, s);
                xs[i] = (xs[i] - mean) * scale + shift;
            }
        }
        if (weights != null) {
            for (int i = 0; i < geo.slabSize; i++) {
                xs[i] *= weights[i];
            }
        }
        geo.write(out, n, g, xs);
    }

    /**
     * dx, dgamma, dbeta from dy, using the statistics the forward pass left in {@code stats}.
     *
     * @param dGammaArray per-channel gradient of gamma, length C, overwritten; null when the layer has no gamma
     * @param dBetaArray  per-channel gradient of beta, length C, overwritten; null when the layer has no beta
     */
    public static void backward(INDArray x, INDArray gammaArray, INDArray mask, INDArray dy, int groups,
                                TensorLayout layout, GroupStats stats, INDArray dx, INDArray dGammaArray,
                                INDArray dBetaArray) {
        double[] gamma = gammaArray == null ? null : vector(gammaArray, Scratch.Slot.GAMMA);
        Geometry geo = new Geometry(x.shape(), layout, groups);
        int channels = groups * geo.perGroup;
        // Per (example, channel) sums of dy and of dy * (x - mean): each unit writes its own slots, so units can run
        // in parallel; the per-channel parameter gradients are summed over examples afterwards, in a fixed order.
        double[] sumDy = Scratch.doubles(Scratch.Slot.SUM_DY, geo.examples * channels);
        double[] sumDyCentered = Scratch.doubles(Scratch.Slot.SUM_DY_CENTERED, geo.examples * channels);
        if (FloatRows.applies(x, layout, mask)) {
            FloatRows.backward(x, dy, dx, groups, geo, gamma, stats, sumDy, sumDyCentered);
        } else {
            Elements in = Elements.of(x);
            Elements gradOut = Elements.of(dy);
            Elements gradIn = Elements.of(dx);
            double[] masks = maskValues(mask);
            Parallel.forEach(geo.examples * groups, x.length(), unit -> backwardSlab(in, gradOut, gradIn, masks, unit,
                    groups, geo, gamma, stats, sumDy, sumDyCentered));
        }
        if (dGammaArray != null || dBetaArray != null) {
            double[] dGamma = Scratch.doubles(Scratch.Slot.D_GAMMA, channels);
            double[] dBeta = Scratch.doubles(Scratch.Slot.D_BETA, channels);
            Arrays.fill(dGamma, 0, channels, 0);
            Arrays.fill(dBeta, 0, channels, 0);
            for (int n = 0; n < geo.examples; n++) {
                for (int c = 0; c < channels; c++) {
                    dGamma[c] += sumDyCentered[n * channels + c] * stats.rstd[n * groups + c / geo.perGroup];
                    dBeta[c] += sumDy[n * channels + c];
                }
            }
            if (dGammaArray != null) {
                Elements.of(dGammaArray).write(0, dGamma, 0, channels);
            }
            if (dBetaArray != null) {
                Elements.of(dBetaArray).write(0, dBeta, 0, channels);
            }
        }
    }

    /** The general path's backward for one (example, group) slab: any layout, float or double, masks. */
    private static void backwardSlab(Elements in, Elements gradOut, Elements gradIn, double[] masks, int unit,
                                     int groups, Geometry geo, double[] gamma, GroupStats stats, double[] sumDy,
                                     double[] sumDyCentered) {
        int channels = groups * geo.perGroup;
        int n = unit / groups;
        int g = unit % groups;
        double[] xs = Scratch.doubles(Scratch.Slot.X, geo.slabSize);
        double[] dys = Scratch.doubles(Scratch.Slot.DY, geo.slabSize);
        double[] weights = masks == null ? null : geo.weights(masks, n);
        geo.read(in, n, g, xs);
        geo.read(gradOut, n, g, dys);
        if (weights != null) {
            dropPadding(xs, weights, geo.slabSize);
            dropPadding(dys, weights, geo.slabSize);
        }
        double mean = stats.mean[unit];
        double rstd = stats.rstd[unit];
        double weightedDy = 0;        // sum over the slab of gamma_c * dy
        double weightedDyCentered = 0; // sum over the slab of gamma_c * dy * (x - mean)
        for (int j = 0; j < geo.perGroup; j++) {
            int channel = g * geo.perGroup + j;
            double dySum = 0;
            double dyCenteredSum = 0;
            if (geo.channelsLast) {
                for (int s = 0; s < geo.positions; s++) {
                    int i = geo.index(j, s);
                    dySum += dys[i];
                    dyCenteredSum += dys[i] * (xs[i] - mean);
                }
            } else {
                dySum = shiftedSum(dys, j * geo.positions, geo.positions, 0);
                dyCenteredSum = centeredDot(dys, xs, j * geo.positions, geo.positions, mean);
            }
            sumDy[n * channels + channel] = dySum;
            sumDyCentered[n * channels + channel] = dyCenteredSum;
            double scale = gamma == null ? 1 : gamma[channel];
            weightedDy += scale * dySum;
            weightedDyCentered += scale * dyCenteredSum;
        }
        int count = weights == null ? geo.slabSize : presentCount(weights, geo.slabSize);
        double meanTerm = count == 0 ? 0 : rstd * weightedDy / count;
        double centeredTerm = count == 0 ? 0 : rstd * rstd * rstd * weightedDyCentered / count;
        for (int j = 0; j < geo.perGroup; j++) {
            double scale = rstd * (gamma == null ? 1 : gamma[g * geo.perGroup + j]);
            for (int s = 0; s < geo.positions; s++) {
                int i = geo.index(j, s);
                xs[i] = scale * dys[i] - meanTerm - (xs[i] - mean) * centeredTerm;
            }
        }
        if (weights != null) {
            for (int i = 0; i < geo.slabSize; i++) {
                xs[i] *= weights[i];
            }
        }
        geo.write(gradIn, n, g, xs);
    }

    /** A per-channel parameter vector as doubles, in the calling thread's scratch buffer (which may be longer). */
    private static double[] vector(INDArray array, Scratch.Slot slot) {
        INDArray contiguous = isDirectlyAddressable(array) ? array : array.dup('c');
        int length = (int) array.length();
        double[] values = Scratch.doubles(slot, length);
        Elements.of(contiguous).read(0, values, 0, length);
        return values;
    }

    private static double mean(double[] xs, double[] weights, int size, int count) {
        // Shift by one present sample: keeps the sum small when |mean| >> std, and a constant slab sums to exactly 0.
        int first = 0;
        while (weights != null && weights[first] == 0) {
            first++;
        }
        double shift = xs[first];
        if (weights != null) {
            double sum = 0;
            for (int i = 0; i < size; i++) {
                sum += weights[i] * (xs[i] - shift);
            }
            return shift + sum / count;
        }
        return shift + shiftedSum(xs, 0, size, shift) / count;
    }

    /**
     * Sum of (xs[i] - shift) over [from, from + length). Four independent accumulators: one chain of dependent
     * additions would wait on the adder's latency at every element, and Java may not reorder them itself.
     */
    private static double shiftedSum(double[] xs, int from, int length, double shift) {
        double s0 = 0;
        double s1 = 0;
        double s2 = 0;
        double s3 = 0;
        int i = from;
        int end = from + length;
        for (; i + 3 < end; i += 4) {
            s0 += xs[i] - shift;
            s1 += xs[i + 1] - shift;
            s2 += xs[i + 2] - shift;
            s3 += xs[i + 3] - shift;
        }
        for (; i < end; i++) {
            s0 += xs[i] - shift;
        }
        return (s0 + s1) + (s2 + s3);
    }

    private static double variance(double[] xs, double[] weights, int size, int count, double mean) {
        double s0 = 0;
        double s1 = 0;
        double s2 = 0;
        double s3 = 0;
        int i = 0;
        if (weights == null) {
            for (; i + 3 < size; i += 4) {
                double d0 = xs[i] - mean;
                double d1 = xs[i + 1] - mean;
                double d2 = xs[i + 2] - mean;
                double d3 = xs[i + 3] - mean;
                s0 += d0 * d0;
                s1 += d1 * d1;
                s2 += d2 * d2;
                s3 += d3 * d3;
            }
        }
        for (; i < size; i++) {
            double d = xs[i] - mean;
            s0 += weights == null ? d * d : weights[i] * d * d;
        }
        return ((s0 + s1) + (s2 + s3)) / count;
    }

    /** Sum of dy[i] * (x[i] - mean) over [from, from + length), four accumulators as in {@link #shiftedSum}. */
    private static double centeredDot(double[] dy, double[] xs, int from, int length, double mean) {
        double s0 = 0;
        double s1 = 0;
        double s2 = 0;
        double s3 = 0;
        int i = from;
        int end = from + length;
        for (; i + 3 < end; i += 4) {
            s0 += dy[i] * (xs[i] - mean);
            s1 += dy[i + 1] * (xs[i + 1] - mean);
            s2 += dy[i + 2] * (xs[i + 2] - mean);
            s3 += dy[i + 3] * (xs[i + 3] - mean);
        }
        for (; i < end; i++) {
            s0 += dy[i] * (xs[i] - mean);
        }
        return (s0 + s1) + (s2 + s3);
    }

    /** Zeroes padded elements, whatever they hold (NaN too), so that no later product can bring them back. */
    private static void dropPadding(double[] values, double[] weights, int size) {
        for (int i = 0; i < size; i++) {
            if (weights[i] == 0) {
                values[i] = 0;
            }
        }
    }

    private static int presentCount(double[] weights, int size) {
        int count = 0;
        for (int i = 0; i < size; i++) {
            count += weights[i] != 0 ? 1 : 0;
        }
        return count;
    }

    /** The mask as 0/1 doubles, [N * S] in c order, or null. */
    private static double[] maskValues(INDArray mask) {
        if (mask == null) {
            return null;
        }
        double[] values = mask.dup('c').data().asDouble();
        for (int i = 0; i < values.length; i++) {
            values[i] = values[i] != 0 ? 1 : 0;
        }
        return values;
    }

    /** Statistics kept from forward for backward: mean and 1/std per (example, group), unit = n * G + g. */
    public static final class GroupStats {
        double[] mean = new double[0];
        double[] rstd = new double[0];

        void resize(int units) {
            if (mean.length != units) {
                mean = new double[units];
                rstd = new double[units];
            }
        }
    }

    /**
     * Where the elements of one (example, group) slab are. In the work buffer a slab is stored as in the array:
     * channel-major ([C/G][S]) for channels-first layouts, position-major ([S][C/G]) for channels-last ones.
     */
    static final class Geometry {
        final int examples;
        final int channels;
        final int positions;
        final int perGroup;
        final int slabSize;
        final boolean channelsLast;

        Geometry(long[] shape, TensorLayout layout, int groups) {
            this.examples = (int) shape[0];
            this.channels = (int) shape[layout.channelAxis()];
            this.positions = (int) layout.spatialSize(shape);
            this.perGroup = channels / groups;
            this.slabSize = perGroup * positions;
            this.channelsLast = layout.channelsLast();
        }

        /** Index in the work buffer of channel {@code j} of the group at position {@code s}. */
        int index(int j, int s) {
            return channelsLast ? s * perGroup + j : j * positions + s;
        }

        void read(Elements array, int n, int g, double[] slab) {
            int example = n * channels * positions;
            if (channelsLast) {
                for (int s = 0; s < positions; s++) {
                    array.read(example + s * channels + g * perGroup, slab, s * perGroup, perGroup);
                }
            } else {
                array.read(example + g * slabSize, slab, 0, slabSize);
            }
        }

        void write(Elements array, int n, int g, double[] slab) {
            int example = n * channels * positions;
            if (channelsLast) {
                for (int s = 0; s < positions; s++) {
                    array.write(example + s * channels + g * perGroup, slab, s * perGroup, perGroup);
                }
            } else {
                array.write(example + g * slabSize, slab, 0, slabSize);
            }
        }

        /** 0/1 weight of every slab element of example {@code n}, from the per-position mask. */
        double[] weights(double[] masks, int n) {
            double[] weights = Scratch.doubles(Scratch.Slot.WEIGHTS, slabSize);
            for (int j = 0; j < perGroup; j++) {
                for (int s = 0; s < positions; s++) {
                    weights[index(j, s)] = masks[n * positions + s];
                }
            }
            return weights;
        }
    }
}
