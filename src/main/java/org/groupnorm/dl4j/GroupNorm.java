package org.groupnorm.dl4j;

import org.nd4j.autodiff.samediff.SDIndex;
import org.nd4j.autodiff.samediff.SDVariable;
import org.nd4j.autodiff.samediff.SameDiff;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.factory.Nd4j;

/**
 * Group Normalization (Wu and He, ECCV 2018) as one SameDiff function: the definition of the math in this library.
 * It runs on every ND4J backend (it is what the layer executes off the CPU), and users with a plain {@link SameDiff}
 * graph can call it directly.
 *
 * <p>For each example and each group of C/G consecutive channels: mean and biased variance over the group's channels
 * and all spatial/time positions, {@code y = gamma_c * (x - mean) / sqrt(var + eps) + beta_c}.
 */
public final class GroupNorm {

    private GroupNorm() {
    }

    /**
     * Group-normalizes {@code x}.
     *
     * @param sd     the graph to add the operations to
     * @param x      input of the given layout, any minibatch and spatial size
     * @param gamma  per-channel scale, shape [C]; null for none (scale 1)
     * @param beta   per-channel shift, shape [C]; null for none (shift 0)
     * @param groups number of channel groups G; C must be divisible by G
     * @param eps    added to the variance inside the square root, &gt; 0
     * @param layout where the channel axis of {@code x} is
     * @return the normalized array, same shape as {@code x}
     */
    public static SDVariable groupNorm(SameDiff sd, SDVariable x, SDVariable gamma, SDVariable beta,
                                       int groups, double eps, TensorLayout layout) {
        return groupNorm(sd, x, gamma, beta, null, groups, eps, layout);
    }

    /**
     * Group-normalizes {@code x}, leaving masked positions out of the statistics and zeroing their output.
     *
     * @param mask 0 where a position is padding, any other value where it is present: shape [N, T] for the
     *             recurrent layouts (DL4J's time-series mask) or [N, 1] for FF; null for no mask. Padded values are
     *             multiplied by 0, so any finite value there changes nothing (NaN or infinity there would: the
     *             layer's engines never read them, this graph cannot avoid it)
     * @see #groupNorm(SameDiff, SDVariable, SDVariable, SDVariable, int, double, TensorLayout)
     */
    public static SDVariable groupNorm(SameDiff sd, SDVariable x, SDVariable gamma, SDVariable beta, SDVariable mask,
                                       int groups, double eps, TensorLayout layout) {
        if (groups <= 0 || !(eps > 0) || Double.isInfinite(eps)) {
            throw new IllegalArgumentException("GroupNorm: groups must be > 0 and eps a finite number > 0, got groups "
                    + groups + ", eps " + eps);
        }
        long[] knownShape = x.getShape();
        if (knownShape != null && knownShape.length == layout.rank() && knownShape[layout.channelAxis()] > 0
                && knownShape[layout.channelAxis()] % groups != 0) {
            throw new IllegalArgumentException("GroupNorm: " + knownShape[layout.channelAxis()]
                    + " channels are not divisible by " + groups + " groups");
        }
        // Half precision squares overflow at |x - mean| > 256: statistics and arithmetic in float32, result cast back.
        DataType outputType = x.dataType();
        boolean widen = outputType == DataType.HALF || outputType == DataType.BFLOAT16;
        SDVariable input = widen ? x.castTo(DataType.FLOAT) : x;
        SDVariable channelsFirst = sd.permute(input, layout.toChannelsFirst());
        SDVariable grouped = groupedView(sd, channelsFirst, groups);          // [N, G, C/G * S]

        // Subtracting one present sample of each group before summing keeps float32 sums small when |mean| >> std,
        // and makes a constant group exactly zero (so its output is exactly beta). It does not change the math.
        SDVariable centered;
        SDVariable variance;
        SDVariable presence = null;
        if (mask == null) {
            SDVariable shifted = grouped.sub(grouped.get(SDIndex.all(), SDIndex.all(), SDIndex.interval(0, 1)));
            centered = shifted.sub(shifted.mean(true, 2));
            variance = sd.math.square(centered).mean(true, 2);
        } else {
            // 0 is padding, any other value present; padded values are multiplied by 0, never summed.
            presence = sd.reshape(sd.onesLike(channelsFirst).mul(perPositionMask(sd, mask, channelsFirst, layout)),
                    sd.shape(grouped));
            // The group's largest present value: a present sample, exact for a constant group.
            SDVariable shift = grouped.mul(presence).add(presence.rsub(1).mul(-Float.MAX_VALUE)).max(true, 2);
            SDVariable shifted = grouped.sub(shift).mul(presence);
            // A fully masked example has count 0: max(count, 1) gives it mean 0 and variance 0 instead of NaN.
            SDVariable count = sd.max(presence.sum(true, 2), sd.onesLike(presence.sum(true, 2)));
            centered = shifted.sub(shifted.sum(true, 2).div(count)).mul(presence);
            variance = sd.math.square(centered).sum(true, 2).div(count);
        }
        SDVariable normalized = centered.mul(sd.math.rsqrt(variance.add(eps)));
        SDVariable y = sd.reshape(normalized, sd.shape(channelsFirst));
        long[] perChannel = perChannelShape(layout.rank());
        if (gamma != null) {
            y = y.mul(sd.reshape(widen ? gamma.castTo(DataType.FLOAT) : gamma, perChannel));
        }
        if (beta != null) {
            y = y.add(sd.reshape(widen ? beta.castTo(DataType.FLOAT) : beta, perChannel));
            if (presence != null) {
                y = y.mul(sd.reshape(presence, sd.shape(channelsFirst)));   // padding outputs 0, not beta
            }
        }
        y = sd.permute(y, layout.fromChannelsFirst());
        return widen ? y.castTo(outputType) : y;
    }

    /**
     * [N, G, C/G * S] from a channels-first array. It goes through [N, G, C/G, S...] so that channels not divisible
     * by G fail the reshape instead of letting groups span channels.
     */
    private static SDVariable groupedView(SameDiff sd, SDVariable channelsFirst, int groups) {
        SDVariable shape = sd.shape(channelsFirst);
        SDVariable minibatch = sd.slice(shape, new int[]{0}, 1);
        SDVariable channels = sd.slice(shape, new int[]{1}, 1);
        SDVariable groupCount = sd.constant(Nd4j.createFromArray((long) groups).castTo(shape.dataType()));
        SDVariable perGroup = sd.math.floorDiv(channels, groupCount);
        SDVariable rest = sd.constant(Nd4j.createFromArray(-1L).castTo(shape.dataType()));
        SDVariable checked = sd.reshape(channelsFirst, sd.concat(0, minibatch, groupCount, perGroup, rest));
        return sd.reshape(checked, sd.concat(0, minibatch, groupCount, rest));
    }

    /** The mask, shaped to broadcast against the channels-first input. */
    private static SDVariable perPositionMask(SameDiff sd, SDVariable mask, SDVariable x, TensorLayout layout) {
        SDVariable m = mask.neq(0.0).castTo(x.dataType());
        return layout == TensorLayout.FF ? m : sd.expandDims(m, 1);
    }

    /** [1, C, 1, ...]: broadcasts a per-channel vector over a channels-first array of the given rank. */
    private static long[] perChannelShape(int rank) {
        long[] shape = new long[rank];
        java.util.Arrays.fill(shape, 1);
        shape[1] = -1;
        return shape;
    }
}
