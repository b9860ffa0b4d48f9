package org.groupnorm.dl4j.kernel;

import java.nio.Buffer;
import org.groupnorm.dl4j.TensorLayout;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;

/**
 * The float32 channels-first path (no mask): every (example, group) slab is one contiguous run of the array, made of
 * one row of {@code positions} elements per channel, and the work is four run loops ({@link FloatLoops}).
 *
 * <p>Forward takes one pass for the statistics ({@link ShiftedMoments}: shifted sums, repeated around the mean when
 * the shift was too far from it) and one pass for the output. Backward takes per-channel sums of dy and
 * dy * (x - anchor) in one pass and writes dx in a second, from forward's statistics. Both apply the coefficients of
 * {@link Coefficients}. After the first pass a slab is in cache, so the second pass costs little memory traffic.
 */
final class FloatRows {

    /** Rows shorter than this are faster through the general path. */
    static final int MIN_ROW = 16;
    /** Elements per piece of the activation's gradient pass (8 KiB of each array). */
    private static final int ACTIVATION_PIECE = 2048;

    private static final ThreadLocal<FloatLoops.Sums> SUMS = ThreadLocal.withInitial(FloatLoops.Sums::new);
    private static final ThreadLocal<ShiftedMoments> MOMENTS = ThreadLocal.withInitial(ShiftedMoments::new);

    private FloatRows() {
    }

    /** Whether this path handles the call: float32, channels first, no mask, rows long enough to stream. */
    static boolean applies(INDArray x, TensorLayout layout, INDArray mask) {
        return x.dataType() == DataType.FLOAT && !layout.channelsLast() && mask == null
                && layout.spatialSize(x.shape()) >= MIN_ROW;
    }

    static <B extends Buffer> void forward(FloatLoops<B> loops, INDArray x, INDArray y, Geometry geo, double[] gamma,
                                           double[] beta, double eps, FusedActivation activation, GroupStats stats) {
        B in = loops.view(x);
        B out = loops.view(y);
        Parallel.forEach(geo.units(), x.length(),
                unit -> forwardSlab(loops, in, out, unit, geo, gamma, beta, eps, activation, stats));
    }

    static <B extends Buffer> void backward(FloatLoops<B> loops, INDArray x, INDArray dy, INDArray dx, Geometry geo,
                                            double[] gamma, double[] beta, FusedActivation activation,
                                            GroupStats stats, double[] sumDy, double[] sumDyCentered) {
        B in = loops.view(x);
        B gradOut = loops.view(dy);
        B gradIn = loops.view(dx);
        Parallel.forEach(geo.units(), x.length(), unit -> backwardSlab(loops, in, gradOut, gradIn, unit, geo, gamma,
                beta, activation, stats, sumDy, sumDyCentered));
    }

    /** Normalizes slab {@code unit} (= n * G + g) of {@code in} into {@code out} and records its statistics. */
    private static <B extends Buffer> void forwardSlab(FloatLoops<B> loops, B in, B out, int unit, Geometry geo,
                                                       double[] gamma, double[] beta, double eps,
                                                       FusedActivation activation, GroupStats stats) {
        FloatLoops.Sums sums = SUMS.get();
        ShiftedMoments moments = MOMENTS.get();
        int base = unit * geo.slabSize;
        int sample = Math.min(ShiftedMoments.SHIFT_SAMPLE, geo.slabSize);
        loops.moments(in, base, sample, 0f, sums);
        float shift = (float) (sums.plain / sample);
        loops.moments(in, base, geo.slabSize, shift, sums);
        moments.set(shift, sums.plain, sums.weighted, geo.slabSize);
        if (moments.needsExactShift()) {
            shift = moments.exactShift();
            loops.moments(in, base, geo.slabSize, shift, sums);
            moments.set(shift, sums.plain, sums.weighted, geo.slabSize);
        }
        // NaN anywhere in the slab makes both statistics NaN, and the slab's output NaN, as it should be.
        double rstd = moments.rstd(eps);
        stats.mean[unit] = moments.mean;
        stats.rstd[unit] = rstd;
        int first = unit % geo.groups * geo.perGroup;
        double[] scale = Scratch.doubles(Scratch.Slot.SCALE, geo.channels);
        double[] offset = Scratch.doubles(Scratch.Slot.OFFSET, geo.channels);
        Coefficients.forward(moments.mean, rstd, gamma, beta, first, first + geo.perGroup, scale, offset);
        float anchor = Coefficients.anchor(moments.mean);
        for (int c = first; c < first + geo.perGroup; c++) {
            loops.normalize(in, out, base + (c - first) * geo.positions, geo.positions, anchor, (float) scale[c],
                    (float) offset[c], activation);
        }
    }

    /**
     * dx for slab {@code unit} from dy and forward's statistics; stores the slab's per-channel sums of dy and of
     * dy * (x - mean) at [n * C + c] for the parameter gradients. With a fused activation, dy is first taken through
     * it (into dx, which the last pass then overwrites in place) and the sums are of that gradient.
     */
    private static <B extends Buffer> void backwardSlab(FloatLoops<B> loops, B in, B gradOut, B gradIn, int unit,
                                                        Geometry geo, double[] gamma, double[] beta,
                                                        FusedActivation activation, GroupStats stats,
                                                        double[] sumDy, double[] sumDyCentered) {
        FloatLoops.Sums sums = SUMS.get();
        int base = unit * geo.slabSize;
        int sumsBase = unit / geo.groups * geo.channels;
        int first = unit % geo.groups * geo.perGroup;
        double mean = stats.mean[unit];
        float anchor = Coefficients.anchor(mean);
        if (activation.isIdentity()) {
            for (int c = first; c < first + geo.perGroup; c++) {
                loops.gradientSums(in, gradOut, base + (c - first) * geo.positions, geo.positions, anchor, sums);
                sumDy[sumsBase + c] = sums.plain;
                sumDyCentered[sumsBase + c] = sums.weighted;
            }
        } else {
            double[] scale = Scratch.doubles(Scratch.Slot.SCALE, geo.channels);
            double[] offset = Scratch.doubles(Scratch.Slot.OFFSET, geo.channels);
            Coefficients.forward(mean, stats.rstd[unit], gamma, beta, first, first + geo.perGroup, scale, offset);
            for (int c = first; c < first + geo.perGroup; c++) {
                sumDy[sumsBase + c] = 0;
                sumDyCentered[sumsBase + c] = 0;
                // In pieces that stay in the first-level cache: the sums then read back what was just written.
                for (int from = 0; from < geo.positions; from += ACTIVATION_PIECE) {
                    int start = base + (c - first) * geo.positions + from;
                    int length = Math.min(ACTIVATION_PIECE, geo.positions - from);
                    loops.activationGradient(in, gradOut, gradIn, start, length, anchor, (float) scale[c],
                            (float) offset[c], activation);
                    loops.gradientSums(in, gradIn, start, length, anchor, sums);
                    sumDy[sumsBase + c] += sums.plain;
                    sumDyCentered[sumsBase + c] += sums.weighted;
                }
            }
            gradOut = gradIn;   // the activation's gradient, where dx will be
        }
        double[] dyScale = Scratch.doubles(Scratch.Slot.DY_SCALE, geo.channels);
        double[] xScale = Scratch.doubles(Scratch.Slot.X_SCALE, geo.channels);
        double[] constant = Scratch.doubles(Scratch.Slot.CONSTANT, geo.channels);
        Coefficients.backward(mean, stats.rstd[unit], geo.slabSize, gamma, first, first + geo.perGroup, sumDy,
                sumDyCentered, sumsBase, dyScale, xScale, constant);
        for (int c = first; c < first + geo.perGroup; c++) {
            loops.inputGradient(in, gradOut, gradIn, base + (c - first) * geo.positions, geo.positions, anchor,
                    (float) dyScale[c], (float) xScale[c], (float) constant[c]);
        }
    }
}
