package org.groupnorm.dl4j.runtime;

import org.deeplearning4j.nn.workspace.ArrayType;
import org.deeplearning4j.nn.workspace.LayerWorkspaceMgr;
import org.groupnorm.dl4j.TensorLayout;
import org.groupnorm.dl4j.kernel.GroupNormKernel;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.memory.MemoryWorkspace;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.api.ops.impl.controlflow.Select;
import org.nd4j.linalg.api.ops.impl.reduce3.Dot;
import org.nd4j.linalg.api.ops.impl.transforms.floating.RSqrt;
import org.nd4j.linalg.api.ops.impl.transforms.pairwise.arithmetic.AddOp;
import org.nd4j.linalg.api.ops.impl.transforms.pairwise.arithmetic.MulOp;
import org.nd4j.linalg.api.ops.impl.transforms.pairwise.arithmetic.SubOp;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.indexing.BooleanIndexing;
import org.nd4j.linalg.indexing.NDArrayIndex;
import org.nd4j.linalg.indexing.conditions.Conditions;
import org.nd4j.linalg.ops.transforms.Transforms;

/**
 * The backend-neutral engine: GroupNorm forward and analytic backward as ND4J operations on whole arrays, so it runs
 * wherever ND4J runs (it is what CUDA executes). Temporaries live in the layer's working-memory workspaces; every
 * full-size step is one operation that writes into an array it was given (fresh allocations cost more than the
 * arithmetic), and broadcasts are the custom ops that take their output, never the array they read (ND4J's
 * broadcasts in place take 2-3x as long on the CPU).
 *
 * <p>The arithmetic is the kernel's: per (example, group) the values are shifted by one present sample (a constant
 * group then gives exactly beta, and sums stay small when |mean| &gt;&gt; std), the mean and the biased variance are
 * taken over the present elements from one pass of sums of the shifted values and their squares, and
 * {@code y = (x - shift) * scale_c + offset_c}. Backward computes
 * {@code dx = rstd * (g*dy - mean(g*dy) - xhat * mean(g*dy * xhat))} over the group from per-channel sums. Every sum
 * accumulates in double (a group can hold millions of elements). Forward keeps each group's mean and 1/std (with the
 * layer's input, as DL4J's BatchNorm keeps its own), so backward reads x once to center it instead of recomputing
 * them; it centers on the mean rounded to the compute type and folds the rounding into its coefficients, so a mean
 * that dwarfs the standard deviation costs no accuracy. The compute type is float32 for half-precision input (float64
 * input stays float64). Padded positions (mask 0) are replaced by 0 before anything reads them, so no value there,
 * NaN included, reaches the statistics; they output 0 and receive 0.
 */
final class PortableEngine implements GroupNormEngine<PortableEngine.Statistics> {

    /**
     * Each (example, group)'s mean, [N, G, 1] in double (backward centers x on it rounded to the compute type and
     * corrects its sums for the rounding), and 1/sqrt(var + eps), [N, G, 1] in the compute type.
     */
    record Statistics(INDArray mean, INDArray rstd) {

        /** Room for a call's statistics in the current workspace. */
        static Statistics allocate(GroupNormCall call) {
            long[] shape = {call.x().size(0), call.groups(), 1};
            return new Statistics(Nd4j.createUninitialized(DataType.DOUBLE, shape),
                    Nd4j.createUninitialized(Groups.computeType(call.x()), shape));
        }

        /** Room for a call's statistics in the workspace of the layer's input (see {@link #keepsStatistics}). */
        static Statistics allocateWithInput(GroupNormCall call, LayerWorkspaceMgr workspaceMgr) {
            try (MemoryWorkspace ignored = workspaceMgr.notifyScopeBorrowed(ArrayType.INPUT)) {
                return allocate(call);
            }
        }
    }

    @Override
    public Forward<Statistics> forward(GroupNormCall call, LayerWorkspaceMgr workspaceMgr) {
        INDArray y = workspaceMgr.createUninitialized(ArrayType.ACTIVATIONS, call.x().dataType(), call.x().shape(), 'c');
        Statistics kept = keepsStatistics(workspaceMgr) ? Statistics.allocateWithInput(call, workspaceMgr) : null;
        try (MemoryWorkspace ignored = workspaceMgr.notifyScopeEntered(ArrayType.FF_WORKING_MEM)) {
            Groups groups = Groups.of(call);
            Statistics stats = kept != null ? kept : Statistics.allocate(call);
            INDArray out = groups.writesDirectly(y) ? y.reshape(groups.rows())
                    : Nd4j.createUninitialized(groups.computeType(), groups.rows());
            // out holds x - shift until it is overwritten with y = (x - shift) * scale_c + offset_c, where
            // scale_c = rstd * gamma_c and offset_c = beta_c - (mean - shift) * scale_c (the kernel's formula).
            INDArray meanOffset = statistics(groups, groups.grouped(call.x()), call.eps(),
                    out.reshape(groups.grouped()), stats);
            INDArray scale = channelScale(stats.rstd(), call.gamma(), groups);
            affine(out, scale, channelOffset(meanOffset, scale, call.beta(), groups), out);
            if (!call.hasIdentityActivation()) {
                call.activation().getActivation(out, true);   // in place
            }
            if (groups.presence() != null) {
                out.muli(groups.presence().reshape(groups.rows()));   // padding outputs 0, not the offset or act(it)
            }
            if (!groups.writesDirectly(y)) {
                groups.writeInLayout(out, y);
            }
        }
        return new Forward<>(y, kept);
    }

    @Override
    public INDArray backward(GroupNormCall call, Statistics forwardStats, INDArray dy, INDArray dGamma, INDArray dBeta,
                             LayerWorkspaceMgr workspaceMgr) {
        INDArray dx = workspaceMgr.createUninitialized(ArrayType.ACTIVATION_GRAD, call.x().dataType(),
                call.x().shape(), 'c');
        try (MemoryWorkspace ignored = workspaceMgr.notifyScopeEntered(ArrayType.BP_WORKING_MEM)) {
            Groups groups = Groups.of(call);
            INDArray x = groups.grouped(call.x());
            INDArray grouped = Nd4j.createUninitialized(groups.computeType(), groups.grouped());   // x - mean
            Statistics stats = forwardStats;
            if (stats == null) {
                stats = Statistics.allocate(call);
                statistics(groups, x, call.eps(), grouped, stats);
            }
            // Centered on the mean rounded to the compute type; the sums are corrected for the rounding below.
            INDArray anchor = stats.mean().castTo(groups.computeType());
            groups.center(x, anchor, grouped);
            INDArray residual = stats.mean().sub(anchor.castTo(DataType.DOUBLE))
                    .reshape(groups.examples(), groups.count());                            // mean - anchor
            INDArray centered = grouped.reshape(groups.rows());                              // [N, C, S]
            INDArray out = groups.writesDirectly(dx) ? dx.reshape(groups.rows())
                    : Nd4j.createUninitialized(groups.computeType(), groups.rows());
            INDArray gradOut = groups.rowsOf(dy);                                            // [N, C, S], may be dy
            INDArray scale = channelScale(stats.rstd(), call.gamma(), groups);               // [N, C]
            if (!call.hasIdentityActivation()) {
                INDArray offset = channelOffset(groups.perGroupCoefficient(residual), scale, call.beta(), groups);
                gradOut = throughActivation(call, groups, centered, scale, offset, gradOut);
            }
            // Per (example, channel): sum of dy and sum of dy * (x - mean). xhat = (x - mean) * rstd.
            // In double from here on, until the coefficients of the full-size operations.
            INDArray rstd = stats.rstd().castTo(DataType.DOUBLE).reshape(groups.examples(), groups.count());
            INDArray sumDy = sumsInDouble(gradOut);                                         // [N, C]
            INDArray sumDyXhat = dotsInDouble(gradOut, centered)
                    .subi(sumDy.mul(groups.perChannel(residual))).muli(groups.perChannel(rstd));
            if (dBeta != null) {
                dBeta.assign(sumDy.sum(0));
            }
            if (dGamma != null) {
                dGamma.assign(sumDyXhat.sum(0));
            }
            if (call.gamma() != null) {
                INDArray gamma = call.gamma().castTo(DataType.DOUBLE).reshape(1, -1);
                sumDy.muli(gamma);
                sumDyXhat.muli(gamma);
            }
            long[] byGroup = {groups.examples(), groups.count(), groups.channels() / groups.count()};
            INDArray meanDy = groups.perPresentElement(sumDy.reshape(byGroup).sum(2));           // [N, G]
            INDArray meanDyXhat = groups.perPresentElement(sumDyXhat.reshape(byGroup).sum(2));   // [N, G]
            // dx = rstd * gamma_c * dy - rstd * meanDy - (x - mean) * rstd^2 * meanDyXhat, with x - mean taken as
            // (x - anchor) - residual. The group terms go into grouped through out (a broadcast in place takes 2-3x
            // as long), then out gets the dy term.
            INDArray centeredScale = meanDyXhat.muli(rstd).muli(rstd).negi();
            INDArray constant = meanDy.muli(rstd).negi().subi(centeredScale.mul(residual));
            centeredScale = groups.perGroupCoefficient(centeredScale);
            constant = groups.perGroupCoefficient(constant);
            Nd4j.exec(new MulOp(grouped, centeredScale, out.reshape(groups.grouped())));
            Nd4j.exec(new AddOp(out.reshape(groups.grouped()), constant, grouped));
            Nd4j.exec(new MulOp(gradOut, againstRows(scale), out));
            Nd4j.exec(new AddOp(out, centered, out));
            if (groups.presence() != null) {
                out.muli(groups.presence().reshape(groups.rows()));
            }
            if (!groups.writesDirectly(dx)) {
                groups.writeInLayout(out, dx);
            }
        }
        return dx;
    }

    /**
     * The output gradient taken back through the layer's activation, [N, C, S]: the activation's own backprop at the
     * pre-activation value (forward's formula on {@code centered}), 0 at padded positions.
     */
    private static INDArray throughActivation(GroupNormCall call, Groups groups, INDArray centered, INDArray scale,
                                              INDArray offset, INDArray gradOut) {
        INDArray pre = Nd4j.createUninitialized(groups.computeType(), groups.rows());
        affine(centered, scale, offset, pre);
        INDArray gradient = call.activation().backprop(pre, gradOut.castTo(groups.computeType())).getFirst();
        if (groups.presence() != null) {
            gradient.muli(groups.presence().reshape(groups.rows()));
        }
        return gradient;
    }

    /** rstd * gamma_c per (example, channel), [N, C], read only; rstd alone when there is no gamma. */
    private static INDArray channelScale(INDArray rstd, INDArray gamma, Groups groups) {
        INDArray perChannel = groups.perChannel(rstd);
        return gamma == null ? perChannel : perChannel.mul(perChannelParameter(gamma, groups));
    }

    /**
     * beta_c - m * scale_c per (example, channel), [N, C]: the term that completes {@code (x - center) * scale_c}
     * to the layer's output, where m ([N, G, 1]) is each group's mean minus the value x was centered on.
     */
    private static INDArray channelOffset(INDArray meanMinusCenter, INDArray scale, INDArray beta, Groups groups) {
        INDArray offset = groups.perChannel(meanMinusCenter).mul(scale).negi();
        return beta == null ? offset : offset.addi(perChannelParameter(beta, groups));
    }

    /**
     * A per-channel parameter as a [1, C] row in the compute type. The per-(example, channel) arithmetic stays in two
     * dimensions: on the CPU backend ND4J broadcasts [N, C, 1] with [1, C, 1] several times slower than [N, C] with
     * [1, C], which on FF input, where these arrays are as large as the layer's, was a third of the engine's time.
     */
    private static INDArray perChannelParameter(INDArray parameter, Groups groups) {
        return parameter.castTo(groups.computeType()).reshape(1, -1);
    }

    /** A per-(example, channel) coefficient ([N, C]) as [N, C, 1], to broadcast along [N, C, S] rows. */
    private static INDArray againstRows(INDArray perChannel) {
        return perChannel.reshape(perChannel.size(0), perChannel.size(1), 1);
    }

    /**
     * Fills {@code centered} ([N, G, L]) with x minus one present sample of its group (0 at padding), and
     * {@code stats} with each group's mean and 1/sqrt(var + eps) over the present elements, from one pass of sums of
     * the shifted values and their squares, accumulated in double (as the kernel's {@code ShiftedMoments}: a constant
     * group has variance exactly 0, and sums stay small when |mean| &gt;&gt; std).
     *
     * @param grouped x as [N, G, L], channels first, padding zeroed
     * @return each group's mean minus its shift, [N, G, 1] in the compute type
     */
    private static INDArray statistics(Groups groups, INDArray grouped, double eps, INDArray centered,
                                       Statistics stats) {
        INDArray shift = Nd4j.createUninitialized(groups.computeType(), stats.mean().shape());
        groups.shiftInto(grouped, shift);
        groups.center(grouped, shift, centered);
        INDArray meanOffset = groups.perPresentElement(sumsInDouble(centered));                      // [N, G]
        INDArray variance = groups.perPresentElement(dotsInDouble(centered, centered))
                .subi(meanOffset.mul(meanOffset));
        // Rounding can leave a tiny negative variance, which counts as 0 (NaN stays NaN).
        BooleanIndexing.replaceWhere(variance, 0.0, Conditions.lessThan(0.0));
        Nd4j.exec(new RSqrt(variance.addi(eps), variance));
        stats.rstd().assign(variance.reshape(stats.rstd().shape()));
        stats.mean().assign(shift).addi(meanOffset.reshape(stats.mean().shape()));
        return meanOffset.castTo(groups.computeType()).reshape(stats.mean().shape());
    }

    /** Sums of a [R0, R1, K] array along its last axis, [R0, R1] in double: see {@link #dotsInDouble}. */
    private static INDArray sumsInDouble(INDArray values) {
        if (values.size(2) == 1) {   // one element per row: the values themselves (see dotsInDouble)
            return rowsInDouble(values);
        }
        return dotsInDouble(values, Nd4j.ones(values.dataType(), values.size(2)));
    }

    /**
     * Dot products along the last axis of {@code a} ([R0, R1, K]) with {@code b} (the same shape, or one [K] row for
     * every row of a), [R0, R1] in double. ND4J's sums add in the array's own type, which in float loses digits
     * over the millions of elements a group can hold; its dot product accumulates in the type of its result.
     */
    private static INDArray dotsInDouble(INDArray a, INDArray b) {
        if (a.size(2) == 1 && b.rank() == 3) {
            // One element per row (FF input, 1x1 maps): a product. ND4J's dot has a cost per row however short,
            // which on FF input is paid once per element.
            return rowsInDouble(a).muli(rowsInDouble(b));
        }
        INDArray dots = Nd4j.createUninitialized(DataType.DOUBLE, a.size(0), a.size(1));
        Nd4j.exec(new Dot(a, b, dots, 2));
        return dots;
    }

    /** A [R0, R1, 1] array as [R0, R1] in double. */
    private static INDArray rowsInDouble(INDArray values) {
        long[] shape = {values.size(0), values.size(1)};
        return Nd4j.createUninitialized(DataType.DOUBLE, shape).assign(values.reshape(shape));
    }

    /**
     * {@code out = in * scale + offset} with [N, C] coefficients on [N, C, S] rows; out may be in. Through a
     * working array because ND4J's broadcasts take 2-3x as long writing in place as into another array.
     */
    private static void affine(INDArray in, INDArray scale, INDArray offset, INDArray out) {
        INDArray scaled = Nd4j.createUninitialized(in.dataType(), in.shape());
        Nd4j.exec(new MulOp(in, againstRows(scale), scaled));
        Nd4j.exec(new AddOp(scaled, againstRows(offset), out));
    }

    /**
     * Whether forward's statistics can be kept for backward with the layer's input, as DL4J's BatchNorm keeps its
     * own: where the input's workspace is open and outlives forward's working memory (DL4J's inference passes put
     * both in one workspace), or where the input lives outside workspaces.
     */
    private static boolean keepsStatistics(LayerWorkspaceMgr workspaceMgr) {
        if (workspaceMgr.isScopedOut(ArrayType.INPUT)) {
            return true;
        }
        return workspaceMgr.hasConfiguration(ArrayType.INPUT) && workspaceMgr.isWorkspaceOpen(ArrayType.INPUT)
                && (workspaceMgr.isScopedOut(ArrayType.FF_WORKING_MEM) || !workspaceMgr.getWorkspaceName(
                        ArrayType.INPUT).equals(workspaceMgr.getWorkspaceName(ArrayType.FF_WORKING_MEM)));
    }

    /**
     * The shapes of one call and its mask: N examples, C channels in G groups, S positions; L = C/G * S elements per
     * group. "Rows" are [N, C, S], channels first.
     *
     * @param presence     1 where present and 0 at padding, [N, G, L], or null without a mask
     * @param present      how many elements of each group are present, [N, 1] in double, or null without a mask (all
     *                     are)
     * @param firstPresent each example's first present position, or null without a mask
     */
    private record Groups(TensorLayout layout, long[] channelsFirstShape, int count, DataType computeType,
                          INDArray presence, INDArray present, int[] firstPresent) {

        static Groups of(GroupNormCall call) {
            INDArray x = call.x();
            TensorLayout layout = call.layout();
            long[] shape = x.shape();
            long[] channelsFirst = new long[shape.length];
            int[] order = layout.toChannelsFirst();
            for (int i = 0; i < shape.length; i++) {
                channelsFirst[i] = shape[order[i]];
            }
            DataType computeType = computeType(x);
            long examples = shape[0];
            long positions = layout.spatialSize(shape);
            long perGroup = channelsFirst[1] / call.groups() * positions;
            if (call.mask() == null) {
                return new Groups(layout, channelsFirst, call.groups(), computeType, null, null, null);
            }
            // Mask: 0 is padding, any other value present. presence is [N, G, L]; present counts per example.
            INDArray positionPresent = call.mask().neq(0).castTo(computeType).reshape(examples, 1, positions);
            INDArray presence = positionPresent.broadcast(examples, channelsFirst[1], positions)
                    .reshape(examples, call.groups(), perGroup);
            INDArray perExample = positionPresent.sum(2).castTo(DataType.DOUBLE).reshape(examples, 1)
                    .muli(channelsFirst[1] / call.groups());
            INDArray present = Transforms.max(perExample, 1.0, false);   // an all-padding example: 0 / 1, not NaN
            // One argmax and one small transfer, not a host read per position (each a device sync on CUDA). An
            // all-padding example gets 0: its group is all zeros whatever the shift.
            int[] firstPresent = positionPresent.reshape(examples, positions).argMax(1).toIntVector();
            return new Groups(layout, channelsFirst, call.groups(), computeType, presence, present, firstPresent);
        }

        /** float64 input computes in float64, everything else in float32. */
        static DataType computeType(INDArray x) {
            return x.dataType() == DataType.DOUBLE ? DataType.DOUBLE : DataType.FLOAT;
        }

        long examples() {
            return channelsFirstShape[0];
        }

        long channels() {
            return channelsFirstShape[1];
        }

        long positions() {
            long positions = 1;
            for (int axis = 2; axis < channelsFirstShape.length; axis++) {
                positions *= channelsFirstShape[axis];
            }
            return positions;
        }

        long[] grouped() {
            return new long[]{examples(), count, channels() / count * positions()};
        }

        long[] rows() {
            return new long[]{examples(), channels(), positions()};
        }

        /**
         * Whether results can be written into the layer's array as it is: channels first, c-contiguous, the compute
         * type. Otherwise they are computed in a working array and copied over in the layer's layout. Not ND4J's
         * {@code Shape.hasDefaultStridesForShape}: it wants strictly falling strides, which trailing dimensions of
         * size 1 never have ([N, C, 1, 1] has strides [C, 1, 1, 1]), so FF input and 1x1 maps were copied in and out
         * on every call.
         */
        boolean writesDirectly(INDArray target) {
            return !layout.channelsLast() && target.dataType() == computeType
                    && GroupNormKernel.isDirectlyAddressable(target);
        }

        /**
         * An array of the call's layout as [N, C, S] rows in the compute type with padding zeroed: the array itself
         * when it already is that (callers only read it), else a working copy.
         */
        INDArray rowsOf(INDArray array) {
            if (presence == null && writesDirectly(array)) {
                return array.reshape(rows());
            }
            INDArray copy = Nd4j.createUninitialized(computeType, channelsFirstShape, 'c')
                    .assign(array.permute(layout.toChannelsFirst())).reshape(rows());
            if (presence == null) {
                return copy;
            }
            INDArray present = presence.reshape(rows());
            INDArray out = Nd4j.createUninitialized(computeType, rows());
            Nd4j.exec(new Select(new INDArray[]{present.neq(0), copy, Nd4j.zeros(computeType, rows())},
                    new INDArray[]{out}));
            return out;
        }

        /** x as [N, G, L] in the compute type, channels first, padding zeroed: a view of x where it can be. */
        INDArray grouped(INDArray x) {
            return rowsOf(x).reshape(grouped());
        }

        /** Writes one present sample per (example, group) of {@code grouped} into {@code shift}, [N, G, 1]. */
        void shiftInto(INDArray grouped, INDArray shift) {
            if (firstPresent == null) {
                shift.assign(grouped.get(NDArrayIndex.all(), NDArrayIndex.all(), NDArrayIndex.interval(0, 1)));
                return;
            }
            for (int n = 0; n < firstPresent.length; n++) {
                shift.get(NDArrayIndex.point(n), NDArrayIndex.all(), NDArrayIndex.all()).assign(grouped.get(
                        NDArrayIndex.point(n), NDArrayIndex.all(), NDArrayIndex.interval(firstPresent[n],
                                firstPresent[n] + 1)));
            }
        }

        /**
         * centered = grouped - perGroup ([N, G, 1]), and 0 at padded positions. As [N * G, L] rows with one value
         * each: on the CPU backend ND4J's subtraction (not its multiplication or addition) broadcasts the rank-3
         * [N, G, 1] at about half that speed.
         */
        void center(INDArray grouped, INDArray perGroup, INDArray centered) {
            long rows = examples() * count;
            Nd4j.exec(new SubOp(grouped.reshape(rows, -1), perGroup.reshape(rows, 1), centered.reshape(rows, -1)));
            if (presence != null) {
                centered.muli(presence);
            }
        }

        /** Per-group sums ([N, G] in double) divided in place by the number of present elements in each group. */
        INDArray perPresentElement(INDArray sums) {
            return present == null ? sums.divi(channels() / count * positions()) : sums.divi(present);
        }

        /** A per-(example, group) coefficient ([N, G] in double) as [N, G, 1] in the compute type. */
        INDArray perGroupCoefficient(INDArray perGroup) {
            return perGroup.castTo(computeType).reshape(examples(), count, 1);
        }

        /**
         * A per-(example, group) value repeated for each channel of the group, as [N, C]: the product of [N, G, 1]
         * with a [1, 1, C/G] row of ones, because ND4J's {@code broadcast} takes several times as long: it was more
         * than half of the engine's time on FF input, where these arrays are as large as the layer's (PERFORMANCE.md).
         */
        INDArray perChannel(INDArray perGroup) {
            long perGroupChannels = channels() / count;
            INDArray repeated = Nd4j.createUninitialized(perGroup.dataType(), examples(), count, perGroupChannels);
            Nd4j.exec(new MulOp(perGroup.reshape(examples(), count, 1),
                    Nd4j.ones(perGroup.dataType(), 1, 1, perGroupChannels), repeated));
            return repeated.reshape(examples(), channels());
        }

        /** Writes [N, C, S] rows into the layer's array of the call's layout and type. */
        void writeInLayout(INDArray rows, INDArray target) {
            target.permute(layout.toChannelsFirst()).assign(rows.reshape(channelsFirstShape));
        }
    }
}
