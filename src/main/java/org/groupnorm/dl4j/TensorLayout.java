package org.groupnorm.dl4j;

import org.deeplearning4j.nn.conf.CNN2DFormat;
import org.deeplearning4j.nn.conf.RNNFormat;
import org.deeplearning4j.nn.conf.inputs.InputType;
import org.deeplearning4j.nn.conf.layers.Convolution3D;

/**
 * The seven array layouts GroupNorm accepts: where the channel axis is, and which axes are "spatial" (every axis
 * except the minibatch axis 0 and the channel axis). This is the one place that knows it; the config, the SameDiff
 * function, the CPU kernel and the tests all ask here.
 */
public enum TensorLayout {
    /** Feed-forward [N, C]. */
    FF(2, false),
    /** Recurrent, channels first [N, C, T] (DL4J's default {@link RNNFormat#NCW}). */
    NCW(3, false),
    /** Recurrent, channels last [N, T, C]. */
    NWC(3, true),
    /** 2D convolutional, channels first [N, C, H, W]. */
    NCHW(4, false),
    /** 2D convolutional, channels last [N, H, W, C]. */
    NHWC(4, true),
    /** 3D convolutional, channels first [N, C, D, H, W]. */
    NCDHW(5, false),
    /** 3D convolutional, channels last [N, D, H, W, C]. */
    NDHWC(5, true);

    private final int rank;
    private final boolean channelsLast;

    TensorLayout(int rank, boolean channelsLast) {
        this.rank = rank;
        this.channelsLast = channelsLast;
    }

    public int rank() {
        return rank;
    }

    /** True when channels are the last axis, so the elements of one group are strided in memory. */
    public boolean channelsLast() {
        return channelsLast;
    }

    public int channelAxis() {
        return channelsLast ? rank - 1 : 1;
    }

    /** Product of the spatial/time sizes of an array of this layout (1 for FF). */
    public long spatialSize(long[] shape) {
        long size = 1;
        for (int axis = 1; axis < rank; axis++) {
            if (axis != channelAxis()) {
                size *= shape[axis];
            }
        }
        return size;
    }

    /**
     * Axis order that moves this layout's channels to axis 1 (identity for channels-first layouts). Its inverse is
     * {@link #fromChannelsFirst()}.
     */
    public int[] toChannelsFirst() {
        int[] order = new int[rank];
        order[0] = 0;
        order[1] = channelAxis();
        for (int axis = 1, next = 2; axis < rank; axis++) {
            if (axis != channelAxis()) {
                order[next++] = axis;
            }
        }
        return order;
    }

    /** Axis order that moves axis 1 back to this layout's channel axis. */
    public int[] fromChannelsFirst() {
        int[] forward = toChannelsFirst();
        int[] inverse = new int[rank];
        for (int i = 0; i < rank; i++) {
            inverse[forward[i]] = i;
        }
        return inverse;
    }

    /** DL4J's default layout for an array of this rank (what a layer without an input type assumes). */
    public static TensorLayout defaultForRank(int rank) {
        switch (rank) {
            case 2: return FF;
            case 3: return NCW;
            case 4: return NCHW;
            case 5: return NCDHW;
            default:
                throw new IllegalArgumentException("GroupNorm takes arrays of rank 2 to 5 ([N,C], [N,C,T], [N,C,H,W], "
                        + "[N,C,D,H,W] or their channels-last forms), got rank " + rank);
        }
    }

    public static TensorLayout of(CNN2DFormat format) {
        return format == CNN2DFormat.NHWC ? NHWC : NCHW;
    }

    public static TensorLayout of(RNNFormat format) {
        return format == RNNFormat.NWC ? NWC : NCW;
    }

    public static TensorLayout of(Convolution3D.DataFormat format) {
        return format == Convolution3D.DataFormat.NDHWC ? NDHWC : NCDHW;
    }

    /** The layout of arrays of the given input type, or null when GroupNorm cannot take it as it is. */
    public static TensorLayout of(InputType type) {
        switch (type.getType()) {
            case FF:
                return FF;
            case RNN:
                return of(((InputType.InputTypeRecurrent) type).getFormat());
            case CNN:
                return of(((InputType.InputTypeConvolutional) type).getFormat());
            case CNN3D:
                return of(((InputType.InputTypeConvolutional3D) type).getDataFormat());
            default:
                return null;
        }
    }

    /** Number of channels an input type carries, for a type {@link #of(InputType)} accepts. */
    public static long channelsOf(InputType type) {
        switch (type.getType()) {
            case FF:
                return ((InputType.InputTypeFeedForward) type).getSize();
            case RNN:
                return ((InputType.InputTypeRecurrent) type).getSize();
            case CNN:
                return ((InputType.InputTypeConvolutional) type).getChannels();
            case CNN3D:
                return ((InputType.InputTypeConvolutional3D) type).getChannels();
            case CNNFlat:
                return ((InputType.InputTypeConvolutionalFlat) type).getDepth();
            default:
                throw new IllegalArgumentException("no channel axis in input type " + type);
        }
    }
}
