package org.groupnorm.dl4j.runtime;

import org.deeplearning4j.nn.workspace.ArrayType;
import org.deeplearning4j.nn.workspace.LayerWorkspaceMgr;
import org.groupnorm.dl4j.kernel.GroupStats;
import org.groupnorm.dl4j.TensorLayout;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.memory.MemoryWorkspace;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.api.ops.impl.controlflow.Select;
import org.nd4j.linalg.api.ops.impl.reduce3.Dot;
import org.nd4j.linalg.api.ops.impl.transforms.pairwise.arithmetic.MulOp;
import org.nd4j.linalg.api.ops.impl.transforms.pairwise.arithmetic.SubOp;
import org.nd4j.linalg.api.shape.Shape;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.indexing.NDArrayIndex;
import org.nd4j.linalg.ops.transforms.Transforms;

/**
 * The backend-neutral engine: GroupNorm forward and analytic backward as ND4J operations on whole arrays, so it runs
 * wherever ND4J runs (it is what CUDA executes). Temporaries live in the layer's working-memory workspaces; every
 * full-size step is one operation that writes in place or into an array it was given (fresh allocations cost more
 * than the arithmetic).
 *
 * <p>The arithmetic is the kernel's: per (example, group) the values are shifted by one present sample (a constant
 * group then gives exactly beta, and float sums stay small when |mean| &gt;&gt; std), the mean and the biased
 * variance of the centered values are taken over the present elements, and backward computes
 * {@code dx = rstd * (g*dy - mean(g*dy) - xhat * mean(g*dy * xhat))} over the group from per-channel sums. Statistics
 * are in float32 for half-precision input (float64 input stays float64). Padded positions (mask 0) are replaced by 0
 * before anything reads them, so no value there, NaN included, reaches the statistics; they output 0 and receive 0.
 */
final class PortableEngine implements GroupNormEngine {

    @Override
    public Forward forward(GroupNormCall call, LayerWorkspaceMgr workspaceMgr) {
        INDArray y = workspaceMgr.createUninitialized(ArrayType.ACTIVATIONS, call.x().dataType(), call.x().shape(), 'c');
        try (MemoryWorkspace ignored = workspaceMgr.notifyScopeEntered(ArrayType.FF_WORKING_MEM)) {
            Groups groups = Groups.of(call);
            Statistics stats = statistics(groups, call.x(), call.eps());
            // y = centered * (rstd * gamma_c) + beta_c: one scale per (example, channel), then one shift per channel.
            INDArray scale = channelScale(groups.perChannel(stats.rstd()), call.gamma(), groups);
            INDArray centered = stats.centered().reshape(groups.rows());
            INDArray out = groups.writesDirectly(y) ? y.reshape(groups.rows()) : centered;
            Nd4j.exec(new MulOp(new INDArray[]{centered, scale}, new INDArray[]{out}));
            if (call.beta() != null) {
                out.addi(call.beta().castTo(groups.computeType()).reshape(1, -1, 1));
            }
            if (!call.hasIdentityActivation()) {
                call.activation().getActivation(out, true);   // in place
            }
            if ((call.beta() != null || !call.hasIdentityActivation()) && groups.presence() != null) {
                out.muli(groups.presence().reshape(groups.rows()));   // padding outputs 0, not beta or act(beta)
            }
            if (!groups.writesDirectly(y)) {
                groups.writeInLayout(out, y);
            }
        }
        return new Forward(y, null);
    }

    @Override
    public INDArray backward(GroupNormCall call, GroupStats forwardStats, INDArray dy, INDArray dGamma, INDArray dBeta,
                             LayerWorkspaceMgr workspaceMgr) {
        INDArray dx = workspaceMgr.createUninitialized(ArrayType.ACTIVATION_GRAD, call.x().dataType(),
                call.x().shape(), 'c');
        try (MemoryWorkspace ignored = workspaceMgr.notifyScopeEntered(ArrayType.BP_WORKING_MEM)) {
            Groups groups = Groups.of(call);
            Statistics stats = statistics(groups, call.x(), call.eps());
            INDArray centered = stats.centered().reshape(groups.rows());                 // [N, C, S]
            INDArray gradOut = groups.rowsOf(dy);                                 // [N, C, S], may be dy
            if (!call.hasIdentityActivation()) {
                gradOut = throughActivation(call, groups, stats, gradOut);
            }
            // Per (example, channel): sum of dy and sum of dy * (x - mean). xhat = (x - mean) * rstd.
            INDArray sumDy = gradOut.sum(2);                                             // [N, C]
            INDArray sumDyCentered = Nd4j.createUninitialized(groups.computeType(), groups.examples(),
                    groups.channels());
            Nd4j.exec(new Dot(gradOut, centered, sumDyCentered, 2));
            INDArray rstdPerChannel = groups.perChannel(stats.rstd());                            // [N, C, 1]
            INDArray sumDyXhat = sumDyCentered.muli(rstdPerChannel.reshape(groups.examples(), groups.channels()));
            if (dBeta != null) {
                dBeta.assign(sumDy.sum(0));
            }
            if (dGamma != null) {
                dGamma.assign(sumDyXhat.sum(0));
            }
            INDArray gamma = call.gamma() == null ? null : call.gamma().castTo(groups.computeType()).reshape(1, -1);
            if (gamma != null) {
                sumDy.muli(gamma);
                sumDyXhat.muli(gamma);
            }
            long[] byGroup = {groups.examples(), groups.count(), groups.channels() / groups.count()};
            INDArray meanDy = sumDy.reshape(byGroup).sum(true, 2).divi(groups.present());          // [N, G, 1]
            INDArray meanDyXhat = sumDyXhat.reshape(byGroup).sum(true, 2).divi(groups.present());  // [N, G, 1]
            // dx = rstd * gamma_c * dy - rstd * meanDy - (x - mean) * rstd^2 * meanDyXhat
            INDArray grouped = stats.centered();
            grouped.muli(meanDyXhat.muli(stats.rstd()).muli(stats.rstd()).negi())
                    .subi(meanDy.muli(stats.rstd()));
            INDArray dyScale = channelScale(rstdPerChannel, call.gamma(), groups);                // [N, C, 1]
            INDArray out = groups.writesDirectly(dx) ? dx.reshape(groups.rows())
                    : Nd4j.createUninitialized(groups.computeType(), groups.rows());
            Nd4j.exec(new MulOp(new INDArray[]{gradOut, dyScale}, new INDArray[]{out}));
            out.addi(centered);
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
     * pre-activation value (recomputed from forward's formula), 0 at padded positions.
     */
    private static INDArray throughActivation(GroupNormCall call, Groups groups, Statistics stats, INDArray gradOut) {
        INDArray pre = Nd4j.createUninitialized(groups.computeType(), groups.rows());
        INDArray scale = channelScale(groups.perChannel(stats.rstd()), call.gamma(), groups);
        Nd4j.exec(new MulOp(new INDArray[]{stats.centered().reshape(groups.rows()), scale}, new INDArray[]{pre}));
        if (call.beta() != null) {
            pre.addi(call.beta().castTo(groups.computeType()).reshape(1, -1, 1));
        }
        INDArray gradient = call.activation().backprop(pre, gradOut.castTo(groups.computeType())).getFirst();
        if (groups.presence() != null) {
            gradient.muli(groups.presence().reshape(groups.rows()));
        }
        return gradient;
    }

    /** rstd * gamma_c per (example, channel), [N, C, 1], in place in {@code rstdPerChannel}; rstd when no gamma. */
    private static INDArray channelScale(INDArray rstdPerChannel, INDArray gamma, Groups groups) {
        return gamma == null ? rstdPerChannel
                : rstdPerChannel.muli(gamma.castTo(groups.computeType()).reshape(1, -1, 1));
    }

    /** x - mean over the present elements, [N, G, L] (a new array), and 1/sqrt(var + eps), [N, G, 1]. */
    private static Statistics statistics(Groups groups, INDArray x, double eps) {
        INDArray grouped = groups.rowsOf(x).reshape(groups.grouped());
        INDArray centered = Nd4j.createUninitialized(groups.computeType(), groups.grouped());
        Nd4j.exec(new SubOp(new INDArray[]{grouped, groups.shift(grouped)}, new INDArray[]{centered}));
        if (groups.presence() != null) {
            centered.muli(groups.presence());
        }
        centered.subi(centered.sum(true, 2).divi(groups.present()));
        if (groups.presence() != null) {
            centered.muli(groups.presence());
        }
        INDArray norm = centered.norm2(true, 2);
        INDArray rstd = Transforms.pow(norm.muli(norm).divi(groups.present()).addi(eps), -0.5, false);
        return new Statistics(centered, rstd);
    }

    private record Statistics(INDArray centered, INDArray rstd) {
    }

    /**
     * The shapes of one call and its mask: N examples, C channels in G groups, S positions; L = C/G * S elements per
     * group. "Rows" are [N, C, S], channels first.
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
            DataType computeType = x.dataType() == DataType.DOUBLE ? DataType.DOUBLE : DataType.FLOAT;
            long examples = shape[0];
            long positions = layout.spatialSize(shape);
            long perGroup = channelsFirst[1] / call.groups() * positions;
            if (call.mask() == null) {
                return new Groups(layout, channelsFirst, call.groups(), computeType, null,
                        Nd4j.scalar(computeType, perGroup), null);
            }
            // Mask: 0 is padding, any other value present. presence is [N, G, L]; present counts per example.
            INDArray positionPresent = call.mask().neq(0).castTo(computeType).reshape(examples, 1, positions);
            INDArray presence = positionPresent.broadcast(examples, channelsFirst[1], positions)
                    .reshape(examples, call.groups(), perGroup);
            INDArray perExample = positionPresent.sum(true, 2).muli(channelsFirst[1] / call.groups());
            INDArray present = Transforms.max(perExample, 1.0, false);   // an all-padding example: 0 / 1, not NaN
            // One argmax and one small transfer, not a host read per position (each a device sync on CUDA). An
            // all-padding example gets 0: its group is all zeros whatever the shift.
            int[] firstPresent = positionPresent.reshape(examples, positions).argMax(1).toIntVector();
            return new Groups(layout, channelsFirst, call.groups(), computeType, presence, present, firstPresent);
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
         * type. Otherwise they are computed in a working array and copied over in the layer's layout.
         */
        boolean writesDirectly(INDArray target) {
            return !layout.channelsLast() && target.dataType() == computeType && target.ordering() == 'c'
                    && Shape.hasDefaultStridesForShape(target);
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

        /** One present sample per (example, group): the first element, or with a mask the first present one. */
        INDArray shift(INDArray grouped) {
            if (firstPresent == null) {
                return grouped.get(NDArrayIndex.all(), NDArrayIndex.all(), NDArrayIndex.interval(0, 1)).dup();
            }
            INDArray shift = Nd4j.createUninitialized(computeType, examples(), count, 1);
            for (int n = 0; n < firstPresent.length; n++) {
                shift.get(NDArrayIndex.point(n), NDArrayIndex.all(), NDArrayIndex.all()).assign(grouped.get(
                        NDArrayIndex.point(n), NDArrayIndex.all(), NDArrayIndex.interval(firstPresent[n],
                                firstPresent[n] + 1)));
            }
            return shift;
        }

        /** A per-(example, group) value repeated for each channel of the group, as [N, C, 1] (a new array). */
        INDArray perChannel(INDArray perGroup) {
            long perGroupChannels = channels() / count;
            return perGroup.reshape(examples(), count, 1).broadcast(examples(), count, perGroupChannels)
                    .reshape(examples(), channels(), 1);
        }

        /** Writes [N, C, S] rows into the layer's array of the call's layout and type. */
        void writeInLayout(INDArray rows, INDArray target) {
            target.permute(layout.toChannelsFirst()).assign(rows.reshape(channelsFirstShape));
        }
    }
}
