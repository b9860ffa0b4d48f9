package org.groupnorm.dl4j.kernel;

import java.lang.ref.Reference;
import java.util.Arrays;
import org.groupnorm.dl4j.TensorLayout;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The CPU kernel: GroupNorm forward and analytic backward as plain loops, with the same contract as
 * {@link org.groupnorm.dl4j.GroupNorm#groupNorm} (and the tests hold the two to the same results).
 *
 * <p>An activation can be fused into both passes ({@link FusedActivation}). Forward fills a {@link GroupStats} with
 * each (example, group)'s mean and 1/std; backward takes it back as an argument instead of recomputing it. Each call
 * goes down one of three paths, one per memory format, all made of the formulas in {@link Coefficients}:
 * <ul>
 *   <li>{@link FloatRows}: float32 and float16 channels-first (what most networks run);</li>
 *   <li>{@link FloatChannelsLast}: float32 and float16 channels-last (Keras imports, NHWC networks), and
 *   channels-first with one position (FF input), which is laid out the same way;</li>
 *   <li>{@link GeneralPath}: everything else (float64, bfloat16, channels-first rows of 2 to
 *   {@value FloatRows#MIN_ROW} - 1 positions), in double.</li>
 * </ul>
 * Those two compute float16 storage, and masked input, in per-thread float32 copies of each slab or block. They run
 * on SIMD loops through the JDK Vector API ({@link VectorLoops}) when the JVM was started with
 * {@code --add-modules jdk.incubator.vector}, unless the system property {@code groupnorm.vectorApi} is {@code false};
 * otherwise on plain Java loops ({@link BlockLoops}). Both compute the same values.
 *
 * <p>Arrays must be c-contiguous host arrays of a type {@link #supports} accepts.
 */
public final class GroupNormKernel {

    private static final String VECTOR_MODULE = "jdk.incubator.vector";
    private static final Logger LOG = LoggerFactory.getLogger(GroupNormKernel.class);

    /**
     * The loops, chosen (and logged) when first used: other backends and the portable engine only ask
     * {@link #supports} and {@link #isDirectlyAddressable}, which must not pick (or announce) CPU loops.
     */
    private static final class Loops {
        static final FloatLoops<?> CHOSEN = chooseLoops();
    }

    private GroupNormKernel() {
    }

    /**
     * True on the CPU backend for FLOAT/DOUBLE/HALF/BFLOAT16 arrays under 2 GiB: the kernel reads host memory
     * through {@link java.nio.ByteBuffer}s, which are int-indexed by byte.
     */
    public static boolean supports(INDArray x) {
        return Nd4j.getEnvironment().isCPU() && Elements.supports(x.dataType())
                && x.length() * x.dataType().width() <= Integer.MAX_VALUE;
    }

    /** Whether float32 calls run on the Vector API's SIMD loops. */
    public static boolean usesVectorApi() {
        return Loops.CHOSEN.getClass() != BlockLoops.class;
    }

    /**
     * True when the kernel can address the array where it is (else the caller passes a c-order copy): its elements
     * are contiguous in c order. Neither the order flag nor the stride of a dimension of size 1 matters (DL4J's
     * parameter views are 'f' vectors; ND4J gives size-1 dimensions stride 1, e.g. [3, 1, 1, 1] has strides 1, 1, 1, 1).
     */
    public static boolean isDirectlyAddressable(INDArray array) {
        long expected = 1;
        for (int d = array.rank() - 1; d >= 0; d--) {
            if (array.size(d) != 1 && array.stride(d) != expected) {
                return false;
            }
            expected *= array.size(d);
        }
        return true;
    }

    /**
     * y = GroupNorm(x); returns each (example, group)'s statistics for {@link #backward}.
     *
     * @param gammaArray per-channel scale, length C, or null for none (scale 1)
     * @param betaArray  per-channel shift, length C, or null for none (shift 0)
     * @param mask  [N, S] with 0 for padded positions and anything else for present ones, or null
     * @param activation applied to the normalized output ({@link FusedActivation#IDENTITY} for none); padded
     *                   positions output 0 whatever it is
     */
    public static GroupStats forward(INDArray x, INDArray gammaArray, INDArray betaArray, INDArray mask, int groups,
                                     double eps, FusedActivation activation, TensorLayout layout, INDArray y) {
        double[] gamma = gammaArray == null ? null : vector(gammaArray, Scratch.Slot.GAMMA);
        double[] beta = betaArray == null ? null : vector(betaArray, Scratch.Slot.BETA);
        Geometry geo = new Geometry(x.shape(), layout, groups);
        GroupStats stats = new GroupStats(geo.examples, groups);
        double[] masks = maskValues(mask);
        if (FloatRows.applies(x, layout)) {
            FloatRows.forward(Loops.CHOSEN, x, y, Presence.of(masks, geo.examples, geo.positions), geo, gamma, beta, eps,
                    activation, stats);
        } else if (FloatChannelsLast.applies(x, layout)) {
            FloatChannelsLast.forward(Loops.CHOSEN, x, y, Presence.of(masks, geo.examples, geo.positions), geo, gamma, beta,
                    eps, activation, stats);
        } else {
            GeneralPath.forward(Elements.of(x), Elements.of(y), masks, geo, gamma, beta, eps, activation, stats);
        }
        // The paths read and write through views of the arrays' memory, which do not keep the arrays alive.
        Reference.reachabilityFence(x);
        Reference.reachabilityFence(y);
        return stats;
    }

    /**
     * dx, dgamma, dbeta from dy and the statistics {@link #forward} returned for this x, with the same parameters and
     * activation as that forward call (beta is needed only by an activation).
     *
     * @param dGammaArray per-channel gradient of gamma, length C, overwritten; null when the layer has no gamma
     * @param dBetaArray  per-channel gradient of beta, length C, overwritten; null when the layer has no beta
     */
    public static void backward(INDArray x, INDArray gammaArray, INDArray betaArray, INDArray mask, INDArray dy,
                                int groups, FusedActivation activation, TensorLayout layout, GroupStats stats,
                                INDArray dx, INDArray dGammaArray, INDArray dBetaArray) {
        double[] gamma = gammaArray == null ? null : vector(gammaArray, Scratch.Slot.GAMMA);
        double[] beta = betaArray == null || activation.isIdentity() ? null : vector(betaArray, Scratch.Slot.BETA);
        Geometry geo = new Geometry(x.shape(), layout, groups);
        if (!stats.fits(geo.examples, groups)) {
            throw new IllegalArgumentException("GroupNorm kernel: statistics of " + stats.mean.length
                    + " groups do not belong to an input of " + geo.examples + " examples x " + groups + " groups");
        }
        // Per (example, channel) sums of dy and of dy * (x - mean): each unit writes its own slots, so units can run
        // in parallel; the per-channel parameter gradients are summed over examples afterwards, in a fixed order.
        double[] sumDy = Scratch.doubles(Scratch.Slot.SUM_DY, geo.examples * geo.channels);
        double[] sumDyCentered = Scratch.doubles(Scratch.Slot.SUM_DY_CENTERED, geo.examples * geo.channels);
        double[] masks = maskValues(mask);
        if (FloatRows.applies(x, layout)) {
            FloatRows.backward(Loops.CHOSEN, x, dy, dx, Presence.of(masks, geo.examples, geo.positions), geo, gamma, beta,
                    activation, stats, sumDy, sumDyCentered);
        } else if (FloatChannelsLast.applies(x, layout)) {
            FloatChannelsLast.backward(Loops.CHOSEN, x, dy, dx, Presence.of(masks, geo.examples, geo.positions), geo, gamma,
                    beta, activation, stats, sumDy, sumDyCentered);
        } else {
            GeneralPath.backward(Elements.of(x), Elements.of(dy), Elements.of(dx), masks, geo, gamma, beta,
                    activation, stats, sumDy, sumDyCentered);
        }
        double[] dGamma = dGammaArray == null ? null : Scratch.doubles(Scratch.Slot.D_GAMMA, geo.channels);
        double[] dBeta = dBetaArray == null ? null : Scratch.doubles(Scratch.Slot.D_BETA, geo.channels);
        parameterGradients(geo, stats, sumDy, sumDyCentered, dGamma, dBeta);
        if (dGamma != null) {
            Elements.of(dGammaArray).write(0, dGamma, 0, geo.channels);
        }
        if (dBeta != null) {
            Elements.of(dBetaArray).write(0, dBeta, 0, geo.channels);
        }
        // The paths read and write through views of the arrays' memory, which do not keep the arrays alive.
        Reference.reachabilityFence(x);
        Reference.reachabilityFence(dy);
        Reference.reachabilityFence(dx);
        Reference.reachabilityFence(dGammaArray);
        Reference.reachabilityFence(dBetaArray);
    }

    /**
     * dgamma_c = the sum over examples of sumDyCentered[n, c] * rstd[n, g(c)], dbeta_c = the sum of sumDy[n, c] (each
     * null when not wanted), every channel's terms added in example order. Each thread takes a range of whole groups
     * and reads its part of every example's row: with one position per channel (FF input) these N x C sums are as
     * large as the input.
     */
    private static void parameterGradients(Geometry geo, GroupStats stats, double[] sumDy, double[] sumDyCentered,
                                           double[] dGamma, double[] dBeta) {
        int ranges = Math.min(geo.groups, Parallel.threads());
        Parallel.forEach(ranges, (long) geo.examples * geo.channels, range -> {
            int g0 = geo.groups * range / ranges;
            int g1 = geo.groups * (range + 1) / ranges;
            int from = g0 * geo.perGroup;
            int to = g1 * geo.perGroup;
            if (dGamma != null) {
                Arrays.fill(dGamma, from, to, 0);
                for (int n = 0; n < geo.examples; n++) {
                    for (int g = g0; g < g1; g++) {
                        double rstd = stats.rstd[n * geo.groups + g];
                        for (int c = g * geo.perGroup; c < (g + 1) * geo.perGroup; c++) {
                            dGamma[c] += sumDyCentered[n * geo.channels + c] * rstd;
                        }
                    }
                }
            }
            if (dBeta != null) {
                Arrays.fill(dBeta, from, to, 0);
                for (int n = 0; n < geo.examples; n++) {
                    for (int c = from; c < to; c++) {
                        dBeta[c] += sumDy[n * geo.channels + c];
                    }
                }
            }
        });
    }

    /** A per-channel parameter vector as doubles, in the calling thread's scratch buffer (which may be longer). */
    private static double[] vector(INDArray array, Scratch.Slot slot) {
        INDArray contiguous = isDirectlyAddressable(array) ? array : array.dup('c');
        int length = (int) array.length();
        double[] values = Scratch.doubles(slot, length);
        Elements.of(contiguous).read(0, values, 0, length);
        Reference.reachabilityFence(contiguous);
        return values;
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
