package org.groupnorm.dl4j.kernel;

import java.nio.Buffer;
import java.util.Arrays;
import org.groupnorm.dl4j.TensorLayout;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;

/**
 * The channels-first path for float32 and binary16 storage: every (example, group) slab is one contiguous run of the
 * array, made of one row of {@code positions} elements per channel, and the work is four run loops
 * ({@link FloatLoops}). A binary16 slab is widened into a per-thread float32 copy, computed there exactly as a float32
 * slab, and rounded back: statistics and arithmetic in float32, one rounding to half per output. A masked slab is
 * computed the same way on a copy of its present positions ({@link Presence}), its padded ones set to 0 afterwards;
 * float32 slabs of examples without padding run in place.
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

    /**
     * Whether this path handles the call: float32 or binary16 (the arrays all of x's type), channels first, rows long
     * enough to stream (masked or not).
     */
    static boolean applies(INDArray x, TensorLayout layout) {
        return (x.dataType() == DataType.FLOAT || x.dataType() == DataType.HALF) && !layout.channelsLast()
                && layout.spatialSize(x.shape()) >= MIN_ROW;
    }

    static <B extends Buffer> void forward(FloatLoops<B> loops, INDArray x, INDArray y, Presence present,
                                           Geometry geo, double[] gamma, double[] beta, double eps,
                                           FusedActivation activation, GroupStats stats) {
        StagedArray<B> in = StagedArray.of(loops, x);
        StagedArray<B> out = StagedArray.of(loops, y);
        Parallel.forEach(geo.units(), x.length(), unit -> {
            int n = unit / geo.groups;
            int count = present.count(n);
            if (in.inPlace() != null && present.isComplete(n)) {   // float32 without padding: no copy
                forwardSlab(loops, in.inPlace(), out.inPlace(), unit * geo.slabSize, unit, geo, gamma, beta, eps,
                        activation, stats);
                return;
            }
            B slab = Scratch.buffer(loops, Scratch.BufferSlot.X, geo.perGroup * count);
            if (count == 0) {
                ShiftedMoments moments = MOMENTS.get();
                moments.setEmpty();
                moments.record(stats, unit, eps);
            } else {
                readSlab(in, unit, geo, present, slab);
                forwardSlab(loops, slab, slab, 0, unit, geo.withPositions(count), gamma, beta, eps, activation,
                        stats);
            }
            writeSlab(slab, out, unit, geo, present);
        });
    }

    static <B extends Buffer> void backward(FloatLoops<B> loops, INDArray x, INDArray dy, INDArray dx,
                                            Presence present, Geometry geo, double[] gamma, double[] beta,
                                            FusedActivation activation, GroupStats stats, double[] sumDy,
                                            double[] sumDyCentered) {
        StagedArray<B> in = StagedArray.of(loops, x);
        StagedArray<B> gradOut = StagedArray.of(loops, dy);
        StagedArray<B> gradIn = StagedArray.of(loops, dx);
        Parallel.forEach(geo.units(), x.length(), unit -> {
            int n = unit / geo.groups;
            int count = present.count(n);
            if (in.inPlace() != null && present.isComplete(n)) {   // float32 without padding: no copy
                backwardSlab(loops, in.inPlace(), gradOut.inPlace(), gradIn.inPlace(), unit * geo.slabSize, unit,
                        geo, gamma, beta, activation, stats, sumDy, sumDyCentered);
                return;
            }
            B xs = Scratch.buffer(loops, Scratch.BufferSlot.X, geo.perGroup * count);
            B gradients = Scratch.buffer(loops, Scratch.BufferSlot.DY, geo.perGroup * count);   // dy, then dx
            if (count == 0) {
                int channelSums = n * geo.channels + unit % geo.groups * geo.perGroup;
                Arrays.fill(sumDy, channelSums, channelSums + geo.perGroup, 0);
                Arrays.fill(sumDyCentered, channelSums, channelSums + geo.perGroup, 0);
            } else {
                readSlab(in, unit, geo, present, xs);
                readSlab(gradOut, unit, geo, present, gradients);
                backwardSlab(loops, xs, gradients, gradients, 0, unit, geo.withPositions(count), gamma, beta,
                        activation, stats, sumDy, sumDyCentered);
            }
            writeSlab(gradients, gradIn, unit, geo, present);
        });
    }

    /**
     * The present positions of slab {@code unit} as float32 into {@code slab}: its channels' rows, each
     * {@code present.count(n)} long, one after another.
     */
    private static <B extends Buffer> void readSlab(StagedArray<B> array, int unit, Geometry geo, Presence present,
                                                    B slab) {
        int n = unit / geo.groups;
        if (present.isComplete(n)) {
            array.read(unit * geo.slabSize, slab, 0, geo.slabSize);
            return;
        }
        int count = present.count(n);
        for (int j = 0; j < geo.perGroup; j++) {
            int row = unit * geo.slabSize + j * geo.positions;
            int compactedRow = j * count;
            present.forEachPresent(n, (position, length, compacted) -> array.read(row + position, slab,
                    compactedRow + compacted, length));
        }
    }

    /** {@link #readSlab} the other way, and 0 at the slab's padded positions. */
    private static <B extends Buffer> void writeSlab(B slab, StagedArray<B> array, int unit, Geometry geo,
                                                     Presence present) {
        int n = unit / geo.groups;
        if (present.isComplete(n)) {
            array.write(slab, 0, unit * geo.slabSize, geo.slabSize);
            return;
        }
        int count = present.count(n);
        for (int j = 0; j < geo.perGroup; j++) {
            int row = unit * geo.slabSize + j * geo.positions;
            int compactedRow = j * count;
            present.forEachPresent(n, (position, length, compacted) -> array.write(slab, compactedRow + compacted,
                    row + position, length));
            present.forEachPadded(n, (position, length) -> array.clear(row + position, length));
        }
    }

    /**
     * Normalizes slab {@code unit} (= n * G + g), which starts at element {@code base} of {@code in} and {@code out}
     * (out may be in), and records its statistics.
     */
    private static <B extends Buffer> void forwardSlab(FloatLoops<B> loops, B in, B out, int base, int unit,
                                                       Geometry geo, double[] gamma, double[] beta, double eps,
                                                       FusedActivation activation, GroupStats stats) {
        FloatLoops.Sums sums = SUMS.get();
        ShiftedMoments moments = MOMENTS.get();
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
        moments.record(stats, unit, eps);
        double rstd = stats.rstd[unit];
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
     * dx for slab {@code unit}, which starts at element {@code base} of the buffers, from dy and forward's statistics
     * (dx may be dy: every loop reads an element before it writes it); stores the slab's per-channel sums of dy and
     * of dy * (x - mean) at [n * C + c] for the parameter gradients. With a fused activation the sums and dx are of
     * the gradient through it: a ReLU/LeakyReLU's is recomputed from x in both passes (a comparison), a smooth one's
     * is written into dx first and read back from there.
     */
    private static <B extends Buffer> void backwardSlab(FloatLoops<B> loops, B in, B gradOut, B gradIn, int base,
                                                        int unit, Geometry geo, double[] gamma, double[] beta,
                                                        FusedActivation activation, GroupStats stats,
                                                        double[] sumDy, double[] sumDyCentered) {
        FloatLoops.Sums sums = SUMS.get();
        int sumsBase = unit / geo.groups * geo.channels;
        int first = unit % geo.groups * geo.perGroup;
        double mean = stats.mean[unit];
        float anchor = Coefficients.anchor(mean);
        double[] scale = Scratch.doubles(Scratch.Slot.SCALE, geo.channels);
        double[] offset = Scratch.doubles(Scratch.Slot.OFFSET, geo.channels);
        if (!activation.isIdentity()) {
            Coefficients.forward(mean, stats.rstd[unit], gamma, beta, first, first + geo.perGroup, scale, offset);
        }
        for (int c = first; c < first + geo.perGroup; c++) {
            int start = base + (c - first) * geo.positions;
            if (activation.isIdentity()) {
                loops.gradientSums(in, gradOut, start, geo.positions, anchor, sums);
            } else if (activation.isPiecewiseLinear()) {
                loops.gatedGradientSums(in, gradOut, start, geo.positions, anchor, (float) scale[c],
                        (float) offset[c], activation, sums);
            } else {
                smoothActivationSums(loops, in, gradOut, gradIn, start, geo.positions, anchor, (float) scale[c],
                        (float) offset[c], activation, sums);
            }
            sumDy[sumsBase + c] = sums.plain;
            sumDyCentered[sumsBase + c] = sums.weighted;
        }
        double[] dyScale = Scratch.doubles(Scratch.Slot.DY_SCALE, geo.channels);
        double[] xScale = Scratch.doubles(Scratch.Slot.X_SCALE, geo.channels);
        double[] constant = Scratch.doubles(Scratch.Slot.CONSTANT, geo.channels);
        Coefficients.backward(mean, stats.rstd[unit], geo.slabSize, gamma, first, first + geo.perGroup, sumDy,
                sumDyCentered, sumsBase, dyScale, xScale, constant);
        // A smooth activation's gradient is in dx already (its derivative costs more than a pass over cached data).
        B gradient = activation.isIdentity() || activation.isPiecewiseLinear() ? gradOut : gradIn;
        for (int c = first; c < first + geo.perGroup; c++) {
            int start = base + (c - first) * geo.positions;
            if (activation.isPiecewiseLinear()) {
                loops.gatedInputGradient(in, gradient, gradIn, start, geo.positions, anchor, (float) scale[c],
                        (float) offset[c], activation, (float) dyScale[c], (float) xScale[c], (float) constant[c]);
            } else {
                loops.inputGradient(in, gradient, gradIn, start, geo.positions, anchor, (float) dyScale[c],
                        (float) xScale[c], (float) constant[c]);
            }
        }
    }

    /**
     * One channel's sums of a smooth activation's gradient g = activation'(pre) * dy, which is written into
     * {@code gradIn} (where dx will go) for the last pass: in pieces that stay in the first-level cache, so the sums
     * read back what was just written.
     */
    private static <B extends Buffer> void smoothActivationSums(FloatLoops<B> loops, B in, B gradOut, B gradIn,
                                                                int start, int length, float anchor, float scale,
                                                                float offset, FusedActivation activation,
                                                                FloatLoops.Sums sums) {
        double plain = 0;
        double weighted = 0;
        for (int from = start; from < start + length; from += ACTIVATION_PIECE) {
            int pieceLength = Math.min(ACTIVATION_PIECE, start + length - from);
            loops.activationGradient(in, gradOut, gradIn, from, pieceLength, anchor, scale, offset, activation);
            loops.gradientSums(in, gradIn, from, pieceLength, anchor, sums);
            plain += sums.plain;
            weighted += sums.weighted;
        }
        sums.plain = plain;
        sums.weighted = weighted;
    }
}
