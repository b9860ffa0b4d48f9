package org.groupnorm.dl4j;

import java.util.Collection;
import java.util.Objects;
import org.deeplearning4j.nn.conf.CNN2DFormat;
import org.deeplearning4j.nn.conf.NeuralNetConfiguration;
import org.deeplearning4j.nn.conf.layers.ConvolutionLayer;
import org.deeplearning4j.nn.conf.layers.Layer;
import org.deeplearning4j.nn.conf.layers.LayerValidation;
import org.deeplearning4j.optimize.api.TrainingListener;
import org.deeplearning4j.util.ConvolutionUtils;
import org.groupnorm.dl4j.runtime.WeightStandardizedConvolutionLayer;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.shade.jackson.core.JsonProcessingException;
import org.nd4j.shade.jackson.databind.ObjectMapper;
import org.nd4j.shade.jackson.databind.node.ObjectNode;

/**
 * A 2D convolution whose weights are standardized per output channel in every forward pass (Weight Standardization,
 * Qiao et al. 2019), the partner of GroupNorm for training with tiny batches (mmcv's {@code ConvWS2d}, timm's
 * {@code StdConv2d}). Configured exactly like DL4J's {@link ConvolutionLayer}:
 * <pre>{@code new WeightStandardizedConvolution.Builder(3, 3).nOut(64).stride(1, 1).padding(1, 1).build()}</pre>
 *
 * <p>For each output channel o the convolution uses {@code W'_o = (W_o - mean(W_o)) / sqrt(var(W_o) + eps)}, mean
 * and biased variance over that channel's nIn x kH x kW weights, then adds the bias (if any). The stored parameter
 * is the raw {@code W} (key {@code "W"}, and {@code "b"}), so updaters, weight decay, serialization and weight
 * copying treat it as a plain convolution's; the gradient is carried exactly through the standardization. The
 * standardization costs O(weights) per pass, independent of the batch and image size.
 */
public class WeightStandardizedConvolution extends ConvolutionLayer {

    public static final double DEFAULT_EPS = 1e-5;

    private double eps = DEFAULT_EPS;

    /** For Jackson: DL4J's convolution defaults and eps 1e-5; the stored values are then set. */
    public WeightStandardizedConvolution() {
    }

    private WeightStandardizedConvolution(Builder builder) {
        super(builder);
        this.cnn2dDataFormat = builder.dataFormat;
        this.eps = builder.eps;
        requireValidEps(eps);
    }

    /**
     * The given plain 2D convolution with its weights standardized: every setting (name, shape, updater,
     * regularization, initialization, ...) as it is, eps {@value #DEFAULT_EPS}. Its parameters have the same keys
     * and shapes, so a trained convolution's weights can be copied over.
     *
     * @throws IllegalArgumentException for a subclass of ConvolutionLayer (1D, 3D, depthwise, separable,
     *                                  deconvolution), whose weights are laid out differently
     */
    public static WeightStandardizedConvolution from(ConvolutionLayer convolution) {
        if (convolution.getClass() != ConvolutionLayer.class) {
            throw new IllegalArgumentException(describe(convolution.getLayerName()) + ": only a plain 2D "
                    + "ConvolutionLayer can be standardized, not a " + convolution.getClass().getSimpleName());
        }
        // Through DL4J's own JSON form, so that every setting is carried, including ones added in later versions.
        ObjectMapper mapper = NeuralNetConfiguration.mapper();
        ObjectNode json = mapper.valueToTree(convolution);
        json.put("@class", WeightStandardizedConvolution.class.getName());
        try {
            return (WeightStandardizedConvolution) mapper.treeToValue(json, Layer.class);
        } catch (JsonProcessingException e) {
            throw new IllegalStateException(describe(convolution.getLayerName()) + ": could not copy the "
                    + "convolution's configuration", e);
        }
    }

    /** Added to each output channel's weight variance inside the square root. */
    public double getEps() {
        return eps;
    }

    public void setEps(double eps) {
        requireValidEps(eps);
        this.eps = eps;
    }

    private void requireValidEps(double value) {
        if (!(value > 0) || Double.isInfinite(value)) {
            throw new IllegalArgumentException(describe(layerName) + ": eps must be a finite number > 0, got "
                    + value);
        }
    }

    /** "WeightStandardizedConvolution 'name'": how every message of this layer starts. */
    private static String describe(String layerName) {
        return "WeightStandardizedConvolution '" + (layerName == null ? "(unnamed)" : layerName) + "'";
    }

    @Override
    public org.deeplearning4j.nn.api.Layer instantiate(NeuralNetConfiguration conf,
                                                        Collection<TrainingListener> trainingListeners,
                                                        int layerIndex, INDArray layerParamsView,
                                                        boolean initializeParams, DataType networkDataType) {
        LayerValidation.assertNInNOutSet("WeightStandardizedConvolution", getLayerName(), layerIndex, getNIn(),
                getNOut());
        requireValidEps(eps);
        return RuntimeLayers.wire(new WeightStandardizedConvolutionLayer(conf, networkDataType), conf, initializer(),
                trainingListeners, layerIndex, layerParamsView, initializeParams);
    }

    @Override
    public WeightStandardizedConvolution clone() {
        return (WeightStandardizedConvolution) super.clone();
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof WeightStandardizedConvolution && super.equals(o)
                && Double.compare(eps, ((WeightStandardizedConvolution) o).eps) == 0;
    }

    @Override
    public int hashCode() {
        return Objects.hash(super.hashCode(), eps);
    }

    @Override
    public String toString() {
        return "WeightStandardizedConvolution(eps=" + eps + ", " + super.toString() + ")";
    }

    /** DL4J's {@code ConvolutionLayer.Builder} options, plus {@link #eps(double)}. */
    public static class Builder extends BaseConvBuilder<Builder> {
        private CNN2DFormat dataFormat = CNN2DFormat.NCHW;
        private double eps = DEFAULT_EPS;

        public Builder(int[] kernelSize, int[] stride, int[] padding) {
            super(kernelSize, stride, padding);
        }

        public Builder(int[] kernelSize, int[] stride) {
            super(kernelSize, stride);
        }

        public Builder(int... kernelSize) {
            super(kernelSize);
        }

        public Builder() {
        }

        /** Added to each output channel's weight variance inside the square root (default 1e-5); must be &gt; 0. */
        public Builder eps(double eps) {
            this.eps = eps;
            return this;
        }

        /** Layout of the input and output activations (default NCHW; inferred from the input type otherwise). */
        public Builder dataFormat(CNN2DFormat format) {
            this.dataFormat = format;
            return this;
        }

        @Override
        protected boolean allowCausal() {
            return false;
        }

        @Override
        @SuppressWarnings("unchecked")
        public WeightStandardizedConvolution build() {
            ConvolutionUtils.validateConvolutionModePadding(convolutionMode, padding);
            ConvolutionUtils.validateCnnKernelStridePadding(kernelSize, stride, padding);
            return new WeightStandardizedConvolution(this);
        }
    }
}
