package org.groupnorm.dl4j;

import org.nd4j.autodiff.samediff.SDIndex;
import org.nd4j.autodiff.samediff.SDVariable;
import org.nd4j.autodiff.samediff.SameDiff;
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
     * @param mask 1 where a position is present, 0 where it is padding: shape [N, T] for the recurrent layouts
     *             (DL4J's time-series mask) or [N, 1] for FF; null for no mask
     * @see #groupNorm(SameDiff, SDVariable, SDVariable, SDVariable, int, double, TensorLayout)
     */
    public static SDVariable groupNorm(SameDiff sd, SDVariable x, SDVariable gamma, SDVariable beta, SDVariable mask,
                                       int groups, double eps, TensorLayout layout) {
        if (groups <= 0 || !(eps > 0)) {
            throw new IllegalArgumentException("GroupNorm: groups must be > 0 and eps > 0, got groups " + groups
                    + ", eps " + eps);
        }
        SDVariable channelsFirst = sd.permute(x, layout.toChannelsFirst());
        SDVariable grouped = sd.reshape(channelsFirst, groupedShape(sd, channelsFirst, groups));   // [N, G, C/G * S]

        // Subtracting one sample of each group before summing keeps float32 sums small when |mean| >> std, and
        // makes a constant group exactly zero (so its output is exactly beta). It does not change the math.
        SDVariable shifted = grouped.sub(grouped.get(SDIndex.all(), SDIndex.all(), SDIndex.interval(0, 1)));
        SDVariable centered;
        SDVariable variance;
        SDVariable presence = null;
        if (mask == null) {
            centered = shifted.sub(shifted.mean(true, 2));
            variance = sd.math.square(centered).mean(true, 2);
        } else {
            presence = sd.reshape(sd.onesLike(channelsFirst).mul(perPositionMask(sd, mask, x, layout)),
                    sd.shape(grouped));
            // A fully masked example has count 0: max(count, 1) gives it mean 0 and variance 0 instead of NaN.
            SDVariable count = sd.max(presence.sum(true, 2), sd.onesLike(presence.sum(true, 2)));
            centered = shifted.sub(shifted.mul(presence).sum(true, 2).div(count)).mul(presence);
            variance = sd.math.square(centered).sum(true, 2).div(count);
        }
        SDVariable normalized = centered.mul(sd.math.rsqrt(variance.add(eps)));
        SDVariable y = sd.reshape(normalized, sd.shape(channelsFirst));
        long[] perChannel = perChannelShape(layout.rank());
        if (gamma != null) {
            y = y.mul(sd.reshape(gamma, perChannel));
        }
        if (beta != null) {
            y = y.add(sd.reshape(beta, perChannel));
            if (presence != null) {
                y = y.mul(sd.reshape(presence, sd.shape(channelsFirst)));   // padding outputs 0, not beta
            }
        }
        return sd.permute(y, layout.fromChannelsFirst());
    }

    /** [N, G, -1] from the runtime shape of a channels-first array. */
    private static SDVariable groupedShape(SameDiff sd, SDVariable channelsFirst, int groups) {
        SDVariable minibatch = sd.slice(sd.shape(channelsFirst), new int[]{0}, 1);
        SDVariable rest = sd.constant(Nd4j.createFromArray((long) groups, -1L).castTo(minibatch.dataType()));
        return sd.concat(0, minibatch, rest);
    }

    /** The mask, shaped to broadcast against the channels-first input. */
    private static SDVariable perPositionMask(SameDiff sd, SDVariable mask, SDVariable x, TensorLayout layout) {
        SDVariable m = mask.castTo(x.dataType());
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
