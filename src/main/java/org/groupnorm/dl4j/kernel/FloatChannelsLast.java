package org.groupnorm.dl4j.kernel;

import java.nio.Buffer;
import java.util.Arrays;
import org.groupnorm.dl4j.TensorLayout;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;

/**
 * The channels-last path for float32 and binary16 storage (NWC, NHWC, NDHWC, and channels-first arrays of one
 * position, such as FF input, which are laid out alike). A group's elements are short runs of C/G channels
 * interleaved with every other group's, so instead of walking one group at a time this path walks an example's
 * positions as rows of channels, and every loop works on whole rows with one coefficient per column
 * ({@link FloatLoops}' row loops, SIMD along the channels). Per-column sums are added into per-group statistics.
 *
 * <p>The unit of work is a block of whole groups of one example, read over all its positions: it holds everything
 * its statistics need, so both passes run in one task, as the channels-first path does per slab. A block is the
 * whole example, its rows side by side so that every pass is one sequential stream (which measured faster than
 * narrower blocks that stay in cache but read each row in pieces a full row apart), unless it takes more blocks to
 * give every thread work (one block per example when there are at least as many examples as threads) or to bound
 * the copies below. The statistics are the channels-first path's ({@link ShiftedMoments}, the shift
 * being the mean of the group's first {@value ShiftedMoments#SHIFT_SAMPLE} elements in memory order) and the
 * elementwise formulas are {@link Coefficients}'. A binary16 block is widened into per-thread float32 rows (side by
 * side, one block wide), computed there as a float32 block, and rounded back once. A masked block is copied the same
 * way, one row per present position ({@link Presence}), and its rows at padded positions are set to 0 afterwards;
 * float32 blocks of examples without padding run in place.
 *
 * <p>A fused ReLU or LeakyReLU is applied inside the row loops ({@link FloatLoops.RowGate}: backward recomputes the
 * gate from x with forward's coefficients). A smooth activation (SIGMOID, TANH, SWISH) runs on the block's memory as
 * contiguous runs (the whole block when it spans all channels, else one run per position) through the channels-first
 * path's run loops with the coefficients of the identity ({@code (v - 0) * 1 + 0 = v} exactly): forward applies it in
 * place to the normalized block; backward writes the pre-activation into dx and turns it there into the gradient
 * through the activation, which then stands in for dy. That costs two more passes over the block.
 */
final class FloatChannelsLast {

    /** The narrowest block cut for the threads or the copies: one 512-bit vector of floats. */
    private static final int MIN_WIDTH = 16;
    /**
     * The most floats of a block's float32 copies (16 MiB each, three per thread backward) unless one group
     * alone is larger: blocks are otherwise whole examples, and {@value #MIN_WIDTH} channels of a 3D volume can be
     * hundreds of MB, where the general path this replaces held one group's slab.
     */
    private static final int MAX_STAGED_FLOATS = 1 << 22;

    private static final ThreadLocal<ShiftedMoments> MOMENTS = ThreadLocal.withInitial(ShiftedMoments::new);

    private FloatChannelsLast() {
    }

    /**
     * Whether this path handles the call: float32 or binary16 (the arrays all of x's type), channels last, or channels
     * first with one position (FF input, 1x1 maps), whose memory is the same: each example one row of channels.
     */
    static boolean applies(INDArray x, TensorLayout layout) {
        return (x.dataType() == DataType.FLOAT || x.dataType() == DataType.HALF)
                && (layout.channelsLast() || layout.spatialSize(x.shape()) == 1);
    }

    static <B extends Buffer> void forward(FloatLoops<B> loops, INDArray x, INDArray y, Presence present,
                                           Geometry geo, double[] gamma, double[] beta, double eps,
                                           FusedActivation activation, GroupStats stats) {
        StagedArray<B> in = StagedArray.of(loops, x);
        StagedArray<B> out = StagedArray.of(loops, y);
        Blocks blocks = Blocks.of(geo, copyLimit(in, present));
        Parallel.forEach(blocks.count(), x.length(), unit -> {
            int n = blocks.example(unit);
            int g0 = blocks.firstGroup(unit);
            int g1 = blocks.endGroup(unit);
            if (in.inPlace() != null && present.isComplete(n)) {   // float32 without padding: no copy
                forwardBlock(loops, in.inPlace(), out.inPlace(), blockStart(geo, n, g0), geo.channels, n, g0, g1,
                        geo, gamma, beta, eps, activation, stats);
                return;
            }
            int width = (g1 - g0) * geo.perGroup;
            int count = present.count(n);
            B block = Scratch.buffer(loops, Scratch.BufferSlot.X, width * count);
            if (count == 0) {
                ShiftedMoments moments = MOMENTS.get();
                moments.setEmpty();
                for (int g = g0; g < g1; g++) {
                    moments.record(stats, n * geo.groups + g, eps);
                }
            } else {
                readBlock(in, n, g0, width, geo, present, block);
                forwardBlock(loops, block, block, 0, width, n, g0, g1, geo.withPositions(count), gamma, beta, eps,
                        activation, stats);
            }
            writeBlock(block, out, n, g0, width, geo, present);
        });
    }

    static <B extends Buffer> void backward(FloatLoops<B> loops, INDArray x, INDArray dy, INDArray dx,
                                            Presence present, Geometry geo, double[] gamma, double[] beta,
                                            FusedActivation activation, GroupStats stats, double[] sumDy,
                                            double[] sumDyCentered) {
        StagedArray<B> in = StagedArray.of(loops, x);
        StagedArray<B> gradOut = StagedArray.of(loops, dy);
        StagedArray<B> gradIn = StagedArray.of(loops, dx);
        Blocks blocks = Blocks.of(geo, copyLimit(in, present));
        Parallel.forEach(blocks.count(), x.length(), unit -> {
            int n = blocks.example(unit);
            int g0 = blocks.firstGroup(unit);
            int g1 = blocks.endGroup(unit);
            if (in.inPlace() != null && present.isComplete(n)) {   // float32 without padding: no copy
                backwardBlock(loops, in.inPlace(), gradOut.inPlace(), gradIn.inPlace(), blockStart(geo, n, g0),
                        geo.channels, n, g0, g1, geo, gamma, beta, activation, stats, sumDy, sumDyCentered);
                return;
            }
            int width = (g1 - g0) * geo.perGroup;
            int count = present.count(n);
            int floats = width * count;
            B xs = Scratch.buffer(loops, Scratch.BufferSlot.X, floats);
            B dys = Scratch.buffer(loops, Scratch.BufferSlot.DY, floats);
            B dxs = Scratch.buffer(loops, Scratch.BufferSlot.DX, floats);
            if (count == 0) {
                int channelSums = n * geo.channels + g0 * geo.perGroup;
                Arrays.fill(sumDy, channelSums, channelSums + width, 0);
                Arrays.fill(sumDyCentered, channelSums, channelSums + width, 0);
            } else {
                readBlock(in, n, g0, width, geo, present, xs);
                readBlock(gradOut, n, g0, width, geo, present, dys);
                backwardBlock(loops, xs, dys, dxs, 0, width, n, g0, g1, geo.withPositions(count), gamma, beta,
                        activation, stats, sumDy, sumDyCentered);
            }
            writeBlock(dxs, gradIn, n, g0, width, geo, present);
        });
    }

    /** The most floats a block may span: unlimited when every block runs in place, else the copies' limit. */
    private static <B extends Buffer> int copyLimit(StagedArray<B> in, Presence present) {
        return in.inPlace() != null && present.isComplete() ? Integer.MAX_VALUE : MAX_STAGED_FLOATS;
    }

    /** Where the block of groups [g0, ...) of example n starts in the array: its first row's first element. */
    private static int blockStart(Geometry geo, int n, int g0) {
        return geo.exampleStart(n) + g0 * geo.perGroup;
    }

    /**
     * The block of groups [g0, ...) of example n, {@code width} channels wide, as float32 rows side by side: one row
     * per present position.
     */
    private static <B extends Buffer> void readBlock(StagedArray<B> array, int n, int g0, int width, Geometry geo,
                                                     Presence present, B block) {
        int start = blockStart(geo, n, g0);
        present.forEachPresent(n, (position, length, compacted) -> {
            if (width == geo.channels) {   // the rows are side by side in the array too
                array.read(start + position * width, block, compacted * width, length * width);
                return;
            }
            for (int p = 0; p < length; p++) {
                array.read(start + (position + p) * geo.channels, block, (compacted + p) * width, width);
            }
        });
    }

    /** {@link #readBlock} the other way, and 0 in the block's rows at padded positions. */
    private static <B extends Buffer> void writeBlock(B block, StagedArray<B> array, int n, int g0, int width,
                                                      Geometry geo, Presence present) {
        int start = blockStart(geo, n, g0);
        present.forEachPresent(n, (position, length, compacted) -> {
            if (width == geo.channels) {
                array.write(block, compacted * width, start + position * width, length * width);
                return;
            }
            for (int p = 0; p < length; p++) {
                array.write(block, (compacted + p) * width, start + (position + p) * geo.channels, width);
            }
        });
        present.forEachPadded(n, (position, length) -> {
            for (int p = position; p < position + length; p++) {
                array.clear(start + p * geo.channels, width);
            }
        });
    }

    /**
     * The blocks of a call (example n, groups [g0, g1)), numbered example by example as the work units of
     * {@link Parallel#forEach}; see {@link #groupsPerBlock} for their width. Numbered rather than handed to a
     * callback so that a block's work sits directly under the task's lambda: the Vector API loops it reaches are then
     * two inlining levels shallower (see {@link VectorLoops} on HotSpot's inlining depth).
     */
    private record Blocks(Geometry geo, int blockGroups) {

        static Blocks of(Geometry geo, int maxFloats) {
            return new Blocks(geo, groupsPerBlock(geo, maxFloats));
        }

        int count() {
            return geo.examples * perExample();
        }

        int example(int unit) {
            return unit / perExample();
        }

        int firstGroup(int unit) {
            return unit % perExample() * blockGroups;
        }

        int endGroup(int unit) {
            return Math.min(geo.groups, firstGroup(unit) + blockGroups);
        }

        private int perExample() {
            return ceilDiv(geo.groups, blockGroups);
        }
    }

    /**
     * Runs {@code body} on the memory of a block ({@code width} columns of rows {@code stride} apart from
     * {@code start}, one row per position) as contiguous runs: one when the rows are side by side, else one per row.
     */
    private static void forEachRun(Geometry geo, int start, int stride, int width, RunBody body) {
        if (width == stride) {
            body.run(start, geo.positions * width);
        } else {
            for (int p = 0; p < geo.positions; p++) {
                body.run(start + p * stride, width);
            }
        }
    }

    /** The work on one contiguous run [from, from + length). */
    private interface RunBody {
        void run(int from, int length);
    }

    /**
     * Groups per work unit: the whole example (its rows side by side, so that each pass reads one sequential stream)
     * unless the threads need more units than there are examples or a block's copies ({@code width x positions}
     * floats) would pass {@code maxFloats}; then narrower, but at least {@value #MIN_WIDTH} channels wide when the
     * example has them, so that the row loops run on whole vectors; narrower only where {@value #MIN_WIDTH} channels
     * would pass {@code maxFloats}, and never less than one group.
     */
    private static int groupsPerBlock(Geometry geo, int maxFloats) {
        int blocksPerExample = Math.min(geo.groups, ceilDiv(Parallel.threads(), geo.examples));
        int forThreads = ceilDiv(geo.groups, blocksPerExample);
        int minWidth = Math.max(1, Math.min(MIN_WIDTH, maxFloats / geo.positions));
        int copiedWidth = Math.max(minWidth, maxFloats / geo.positions / MIN_WIDTH * MIN_WIDTH);
        int forCopies = Math.max(1, copiedWidth / geo.perGroup);
        return Math.max(1, Math.min(forThreads, forCopies));
    }

    /**
     * Normalizes groups [g0, g1) of example n, applies the activation, and records their statistics. The block's rows
     * (one per position) start at element {@code start} of {@code in} and {@code out} (out may be in), {@code stride}
     * apart.
     */
    private static <B extends Buffer> void forwardBlock(FloatLoops<B> loops, B in, B out, int start, int stride,
                                                        int n, int g0, int g1, Geometry geo, double[] gamma,
                                                        double[] beta, double eps, FusedActivation activation,
                                                        GroupStats stats) {
        int groups = g1 - g0;
        int width = groups * geo.perGroup;
        float[] shift = Scratch.floats(Scratch.FloatSlot.SHIFT, width);
        double[] sums = Scratch.doubles(Scratch.Slot.GROUP_SUMS, groups);
        double[] squares = Scratch.doubles(Scratch.Slot.GROUP_SQUARES, groups);
        // First shift: the mean of each group's first SHIFT_SAMPLE elements (its channels at the first positions).
        int sampleRows = Math.max(1, Math.min(geo.positions, ShiftedMoments.SHIFT_SAMPLE / geo.perGroup));
        Arrays.fill(shift, 0, width, 0f);
        groupMoments(loops, in, start, stride, sampleRows, groups, geo.perGroup, shift, sums, squares);
        for (int g = 0; g < groups; g++) {
            float groupShift = (float) (sums[g] / ((long) sampleRows * geo.perGroup));
            Arrays.fill(shift, g * geo.perGroup, (g + 1) * geo.perGroup, groupShift);
        }
        groupMoments(loops, in, start, stride, geo.positions, groups, geo.perGroup, shift, sums, squares);
        ShiftedMoments moments = MOMENTS.get();
        boolean again = false;
        for (int g = 0; g < groups; g++) {
            moments.set(shift[g * geo.perGroup], sums[g], squares[g], geo.slabSize);
            if (moments.needsExactShift()) {
                // Too much cancellation for this group: its sums are taken again around the mean just found.
                Arrays.fill(shift, g * geo.perGroup, (g + 1) * geo.perGroup, moments.exactShift());
                again = true;
            }
        }
        if (again) {
            groupMoments(loops, in, start, stride, geo.positions, groups, geo.perGroup, shift, sums, squares);
        }
        float[] anchors = Scratch.floats(Scratch.FloatSlot.ANCHOR, width);
        for (int g = 0; g < groups; g++) {
            moments.set(shift[g * geo.perGroup], sums[g], squares[g], geo.slabSize);
            moments.record(stats, n * geo.groups + g0 + g, eps);
            Arrays.fill(anchors, g * geo.perGroup, (g + 1) * geo.perGroup, Coefficients.anchor(moments.mean));
        }
        float[] scales = Scratch.floats(Scratch.FloatSlot.SCALE, width);
        float[] offsets = Scratch.floats(Scratch.FloatSlot.OFFSET, width);
        forwardCoefficients(n, g0, g1, geo, gamma, beta, stats, scales, offsets);
        FloatLoops.RowGate gate = activation.isPiecewiseLinear()
                ? new FloatLoops.RowGate(scales, offsets, activation) : null;
        loops.rowNormalize(in, out, start, stride, geo.positions, width, anchors, scales, offsets, gate);
        if (!activation.isIdentity() && !activation.isPiecewiseLinear()) {
            forEachRun(geo, start, stride, width, (from, length) -> loops.normalize(out, out, from, length, 0f, 1f,
                    0f, activation));
        }
    }

    /**
     * dx for groups [g0, g1) of example n from dy and forward's statistics; stores their per-channel sums of dy and
     * of dy * (x - mean) at [n * C + c] for the parameter gradients (of the gradient through the activation, when
     * there is one, in place of dy). The block's rows start at element {@code start} of the buffers, {@code stride}
     * apart; dx is not dy (a smooth activation's pre-activation goes into dx while dy is still needed).
     */
    private static <B extends Buffer> void backwardBlock(FloatLoops<B> loops, B in, B gradOut, B gradIn, int start,
                                                         int stride, int n, int g0, int g1, Geometry geo,
                                                         double[] gamma, double[] beta, FusedActivation activation,
                                                         GroupStats stats, double[] sumDy, double[] sumDyCentered) {
        int c0 = g0 * geo.perGroup;
        int width = (g1 - g0) * geo.perGroup;
        int sumsBase = n * geo.channels;
        float[] anchors = Scratch.floats(Scratch.FloatSlot.ANCHOR, width);
        for (int g = g0; g < g1; g++) {
            Arrays.fill(anchors, (g - g0) * geo.perGroup, (g - g0 + 1) * geo.perGroup,
                    Coefficients.anchor(stats.mean[n * geo.groups + g]));
        }
        FloatLoops.RowGate gate = null;
        B gradient = gradOut;
        if (!activation.isIdentity()) {
            float[] scales = Scratch.floats(Scratch.FloatSlot.SCALE, width);
            float[] offsets = Scratch.floats(Scratch.FloatSlot.OFFSET, width);
            forwardCoefficients(n, g0, g1, geo, gamma, beta, stats, scales, offsets);
            if (activation.isPiecewiseLinear()) {
                gate = new FloatLoops.RowGate(scales, offsets, activation);
            } else {
                smoothActivationGradient(loops, in, gradOut, gradIn, start, stride, width, geo, anchors, scales,
                        offsets, activation);
                gradient = gradIn;
            }
        }
        float[] blockSums = Scratch.floats(Scratch.FloatSlot.SUMS, width);
        float[] blockProducts = Scratch.floats(Scratch.FloatSlot.SQUARES, width);
        for (int row = 0; row < geo.positions; row += FloatLoops.ROWS_PER_SUM) {
            int rows = Math.min(FloatLoops.ROWS_PER_SUM, geo.positions - row);
            loops.rowGradientSums(in, gradient, start + row * stride, stride, rows, width, anchors, gate, blockSums,
                    blockProducts);
            accumulate(blockSums, blockProducts, width, row == 0, sumDy, sumDyCentered, sumsBase + c0);
        }
        double[] dyScale = Scratch.doubles(Scratch.Slot.DY_SCALE, geo.channels);
        double[] xScale = Scratch.doubles(Scratch.Slot.X_SCALE, geo.channels);
        double[] constant = Scratch.doubles(Scratch.Slot.CONSTANT, geo.channels);
        for (int g = g0; g < g1; g++) {
            int unit = n * geo.groups + g;
            Coefficients.backward(stats.mean[unit], stats.rstd[unit], geo.slabSize, gamma, g * geo.perGroup,
                    (g + 1) * geo.perGroup, sumDy, sumDyCentered, sumsBase, dyScale, xScale, constant);
        }
        float[] dyScales = narrow(dyScale, c0, width, Scratch.floats(Scratch.FloatSlot.DY_SCALE, width));
        float[] xScales = narrow(xScale, c0, width, Scratch.floats(Scratch.FloatSlot.X_SCALE, width));
        float[] constants = narrow(constant, c0, width, Scratch.floats(Scratch.FloatSlot.CONSTANT, width));
        loops.rowInputGradient(in, gradient, gradIn, start, stride, geo.positions, width, anchors, gate, dyScales,
                xScales, constants);
    }

    /**
     * Forward's per-column coefficients of groups [g0, g1) of example n from its statistics, into {@code scales} and
     * {@code offsets} from index 0 (the block's first column): forward normalizes with them, backward recomputes the
     * pre-activation with them.
     */
    private static void forwardCoefficients(int n, int g0, int g1, Geometry geo, double[] gamma, double[] beta,
                                            GroupStats stats, float[] scales, float[] offsets) {
        double[] scale = Scratch.doubles(Scratch.Slot.SCALE, geo.channels);
        double[] offset = Scratch.doubles(Scratch.Slot.OFFSET, geo.channels);
        for (int g = g0; g < g1; g++) {
            int unit = n * geo.groups + g;
            Coefficients.forward(stats.mean[unit], stats.rstd[unit], gamma, beta, g * geo.perGroup,
                    (g + 1) * geo.perGroup, scale, offset);
        }
        int c0 = g0 * geo.perGroup;
        int width = (g1 - g0) * geo.perGroup;
        narrow(scale, c0, width, scales);
        narrow(offset, c0, width, offsets);
    }

    /**
     * A smooth activation's output gradient, {@code activation'(pre) * dy}, into the block's dx: the pre-activation
     * (forward's coefficients) first, then the activation's gradient at it, in place.
     */
    private static <B extends Buffer> void smoothActivationGradient(FloatLoops<B> loops, B in, B gradOut, B gradIn,
                                                                    int start, int stride, int width, Geometry geo,
                                                                    float[] anchors, float[] scales, float[] offsets,
                                                                    FusedActivation activation) {
        loops.rowNormalize(in, gradIn, start, stride, geo.positions, width, anchors, scales, offsets, null);
        forEachRun(geo, start, stride, width, (from, length) -> loops.activationGradient(gradIn, gradOut, gradIn,
                from, length, 0f, 1f, 0f, activation));
    }

    /**
     * Each group's sums of (x - shift[c]) and (x - shift[c])^2 over the first {@code rows} rows ({@code stride} apart
     * from {@code start}) into {@code sums}/{@code squares}[0 ... groups): float column sums of
     * {@link FloatLoops#ROWS_PER_SUM} rows at a time, each group's added up in double.
     */
    private static <B extends Buffer> void groupMoments(FloatLoops<B> loops, B in, int start, int stride, int rows,
                                                        int groups, int perGroup, float[] shift, double[] sums,
                                                        double[] squares) {
        int width = groups * perGroup;
        float[] pieceSums = Scratch.floats(Scratch.FloatSlot.SUMS, width);
        float[] pieceSquares = Scratch.floats(Scratch.FloatSlot.SQUARES, width);
        Arrays.fill(sums, 0, groups, 0);
        Arrays.fill(squares, 0, groups, 0);
        for (int row = 0; row < rows; row += FloatLoops.ROWS_PER_SUM) {
            int count = Math.min(FloatLoops.ROWS_PER_SUM, rows - row);
            loops.rowMoments(in, start + row * stride, stride, count, width, shift, pieceSums, pieceSquares);
            for (int g = 0; g < groups; g++) {
                double sum = 0;
                double sumOfSquares = 0;
                for (int c = g * perGroup; c < (g + 1) * perGroup; c++) {
                    sum += pieceSums[c];
                    sumOfSquares += pieceSquares[c];
                }
                sums[g] += sum;
                squares[g] += sumOfSquares;
            }
        }
    }

    /**
     * Adds the float sums of one piece of rows into the double ones ({@code into...[base + c]}), starting them from 0
     * at the first piece (no clearing pass: per-block bookkeeping costs as much as the row loops when rows are few, as
     * for FF input's one row per block).
     */
    private static void accumulate(float[] pieceSums, float[] pieceProducts, int width, boolean first,
                                   double[] intoSums, double[] intoProducts, int base) {
        for (int c = 0; c < width; c++) {
            intoSums[base + c] = (first ? 0 : intoSums[base + c]) + pieceSums[c];
            intoProducts[base + c] = (first ? 0 : intoProducts[base + c]) + pieceProducts[c];
        }
    }

    private static int ceilDiv(int a, int b) {
        return (a + b - 1) / b;
    }

    /** {@code values[c0 ... c0 + width)} as floats into {@code floats} from index 0; returns {@code floats}. */
    private static float[] narrow(double[] values, int c0, int width, float[] floats) {
        for (int c = 0; c < width; c++) {
            floats[c] = (float) values[c0 + c];
        }
        return floats;
    }
}
