package org.groupnorm.dl4j.kernel;

import java.nio.Buffer;
import org.groupnorm.dl4j.TensorLayout;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The fast path for the common case: float32, channels-first, no mask. Then every (example, group) slab is one
 * contiguous run of the array, made of one row of {@code positions} elements per channel, and the work is four
 * loops over such runs ({@link FloatLoops}).
 *
 * <p>Forward takes one pass for the statistics (sums of x - shift and (x - shift)^2, with the shift the mean of the
 * slab's first {@value #SHIFT_SAMPLE} elements) and one pass for the output. One-pass moments lose accuracy only when
 * the shift is far from the mean compared to the standard deviation; when it is more than
 * {@link #MAX_SHIFT_IN_STDS} standard deviations away, the pass is repeated with the mean just found as the shift,
 * which makes it exact to rounding. Backward takes per-channel sums of dy and dy * (x - mean) in one pass and writes
 * dx in a second, reusing forward's statistics. After the first pass a slab is in cache, so the second pass costs
 * little memory traffic.
 *
 * <p>The loops are SIMD through the JDK Vector API ({@link VectorLoops}) when the JVM was started with
 * {@code --add-modules jdk.incubator.vector}, unless the system property {@code groupnorm.vectorApi} is
 * {@code false}; otherwise plain Java loops ({@link BlockLoops}). Both compute the same values.
 */
final class FloatRows {

    /** Rows shorter than this are faster through the general kernel. */
    static final int MIN_ROW = 16;
    private static final int SHIFT_SAMPLE = 256;
    private static final double MAX_SHIFT_IN_STDS = 4;
    private static final String VECTOR_MODULE = "jdk.incubator.vector";

    private static final Logger LOG = LoggerFactory.getLogger(FloatRows.class);
    private static final FloatLoops<?> LOOPS = chooseLoops();
    private static final ThreadLocal<FloatLoops.Sums> SUMS = ThreadLocal.withInitial(FloatLoops.Sums::new);

    private FloatRows() {
    }

    /** Whether this path handles the call: float32, channels first, no mask, rows long enough to stream. */
    static boolean applies(INDArray x, TensorLayout layout, INDArray mask) {
        return x.dataType() == DataType.FLOAT && !layout.channelsLast() && mask == null
                && layout.spatialSize(x.shape()) >= MIN_ROW;
    }

    /** Whether the loops in use are the Vector API ones. */
    static boolean usesVectorApi() {
        return LOOPS.getClass() != BlockLoops.class;
    }

    static void forward(INDArray x, INDArray y, int groups, GroupNormKernel.Geometry geo, double[] gamma,
                        double[] beta, double eps, GroupNormKernel.GroupStats stats) {
        forward(LOOPS, x, y, groups, geo, gamma, beta, eps, stats);
    }

    static void backward(INDArray x, INDArray dy, INDArray dx, int groups, GroupNormKernel.Geometry geo,
                         double[] gamma, GroupNormKernel.GroupStats stats, double[] sumDy, double[] sumDyCentered) {
        backward(LOOPS, x, dy, dx, groups, geo, gamma, stats, sumDy, sumDyCentered);
    }

    private static <B extends Buffer> void forward(FloatLoops<B> loops, INDArray x, INDArray y, int groups,
                                                   GroupNormKernel.Geometry geo, double[] gamma, double[] beta,
                                                   double eps, GroupNormKernel.GroupStats stats) {
        B in = loops.view(x);
        B out = loops.view(y);
        Parallel.forEach(geo.examples * groups, x.length(),
                unit -> forwardSlab(loops, in, out, unit, groups, geo, gamma, beta, eps, stats));
    }

    private static <B extends Buffer> void backward(FloatLoops<B> loops, INDArray x, INDArray dy, INDArray dx,
                                                    int groups, GroupNormKernel.Geometry geo, double[] gamma,
                                                    GroupNormKernel.GroupStats stats, double[] sumDy,
                                                    double[] sumDyCentered) {
        B in = loops.view(x);
        B gradOut = loops.view(dy);
        B gradIn = loops.view(dx);
        Parallel.forEach(geo.examples * groups, x.length(), unit -> backwardSlab(loops, in, gradOut, gradIn, unit,
                groups, geo, gamma, stats, sumDy, sumDyCentered));
    }

    /**
     * Normalizes slab {@code unit} (= n * G + g) of {@code in} into {@code out} and records its mean and 1/std.
     *
     * @param gamma per-channel scale, or null for scale 1; {@code beta} likewise, null for shift 0
     */
    private static <B extends Buffer> void forwardSlab(FloatLoops<B> loops, B in, B out, int unit, int groups,
                                                       GroupNormKernel.Geometry geo, double[] gamma, double[] beta,
                                                       double eps, GroupNormKernel.GroupStats stats) {
        FloatLoops.Sums sums = SUMS.get();
        int base = unit * geo.slabSize;
        int sample = Math.min(SHIFT_SAMPLE, geo.slabSize);
        loops.moments(in, base, sample, 0f, sums);
        double shift = sums.plain / sample;
        loops.moments(in, base, geo.slabSize, (float) shift, sums);
        double meanOffset = sums.plain / geo.slabSize;
        double variance = sums.weighted / geo.slabSize - meanOffset * meanOffset;
        if (meanOffset * meanOffset > MAX_SHIFT_IN_STDS * MAX_SHIFT_IN_STDS * variance) {
            // Too much cancellation: repeat with the mean as the shift (x - shift is then exact in float).
            shift = (float) shift + meanOffset;
            loops.moments(in, base, geo.slabSize, (float) shift, sums);
            meanOffset = sums.plain / geo.slabSize;
            variance = sums.weighted / geo.slabSize - meanOffset * meanOffset;
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
            loops.normalize(in, out, base + j * geo.positions, geo.positions, m, (float) scale, (float) offset);
        }
    }

    /**
     * dx for slab {@code unit} from dy and forward's statistics; stores the slab's per-channel sums of dy and of
     * dy * (x - mean) at [n * C + c] for the parameter gradients.
     */
    private static <B extends Buffer> void backwardSlab(FloatLoops<B> loops, B in, B gradOut, B gradIn, int unit,
                                                        int groups, GroupNormKernel.Geometry geo, double[] gamma,
                                                        GroupNormKernel.GroupStats stats, double[] sumDy,
                                                        double[] sumDyCentered) {
        FloatLoops.Sums sums = SUMS.get();
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
            loops.gradientSums(in, gradOut, base + j * geo.positions, geo.positions, m, sums);
            double dyCentered = sums.weighted - meanResidual * sums.plain;
            sumDy[n * geo.channels + channel] = sums.plain;
            sumDyCentered[n * geo.channels + channel] = dyCentered;
            double scale = gamma == null ? 1 : gamma[channel];
            weightedDy += scale * sums.plain;
            weightedDyCentered += scale * dyCentered;
        }
        double meanTerm = rstd * weightedDy / geo.slabSize;
        double centeredTerm = rstd * rstd * rstd * weightedDyCentered / geo.slabSize;
        // dx = rstd * gamma_c * dy - meanTerm - (x - mean) * centeredTerm, with x - mean = (x - m) - meanResidual.
        float xCoefficient = (float) -centeredTerm;
        float constant = (float) (meanResidual * centeredTerm - meanTerm);
        for (int j = 0; j < geo.perGroup; j++) {
            float dyCoefficient = (float) (rstd * (gamma == null ? 1 : gamma[g * geo.perGroup + j]));
            loops.inputGradient(in, gradOut, gradIn, base + j * geo.positions, geo.positions, m, dyCoefficient,
                    xCoefficient, constant);
        }
    }

    /**
     * The Vector API loops when the JVM resolved the incubator module (and the user did not turn them off), else the
     * plain ones. {@link VectorLoops} is only touched in the first case: without the module it cannot even load.
     */
    private static FloatLoops<?> chooseLoops() {
        boolean wanted = Boolean.parseBoolean(System.getProperty("groupnorm.vectorApi", "true"));
        if (wanted && ModuleLayer.boot().findModule(VECTOR_MODULE).isPresent()) {
            LOG.info("GroupNorm CPU kernel: Vector API loops ({})", VectorLoops.describe());
            return new VectorLoops();
        }
        if (wanted) {
            LOG.info("GroupNorm CPU kernel: plain Java loops; start the JVM with --add-modules {} for SIMD loops "
                    + "(1.5-3.5x faster float32 GroupNorm)", VECTOR_MODULE);
        }
        return new BlockLoops();
    }
}
