package org.groupnorm.dl4j;

import java.util.Collection;
import java.util.List;
import java.util.Objects;
import org.deeplearning4j.nn.api.ParamInitializer;
import org.deeplearning4j.nn.conf.CNN2DFormat;
import org.deeplearning4j.nn.conf.InputPreProcessor;
import org.deeplearning4j.nn.conf.NeuralNetConfiguration;
import org.deeplearning4j.nn.conf.RNNFormat;
import org.deeplearning4j.nn.conf.inputs.InputType;
import org.deeplearning4j.nn.conf.layers.Convolution3D;
import org.deeplearning4j.nn.conf.layers.FeedForwardLayer;
import org.deeplearning4j.nn.conf.memory.LayerMemoryReport;
import org.deeplearning4j.nn.conf.memory.MemoryReport;
import org.deeplearning4j.nn.conf.preprocessor.FeedForwardToCnnPreProcessor;
import org.deeplearning4j.optimize.api.TrainingListener;
import org.groupnorm.dl4j.runtime.GroupNormalizationLayer;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.learning.regularization.Regularization;
import org.nd4j.linalg.activations.IActivation;
import org.nd4j.linalg.activations.impl.ActivationIdentity;
import org.nd4j.shade.jackson.annotation.JsonIgnore;
import org.nd4j.shade.jackson.annotation.JsonProperty;

/**
 * Group Normalization layer configuration (Wu and He, ECCV 2018), used like DL4J's own layers:
 * <pre>{@code new GroupNormalization.Builder().groups(32).build()}</pre>
 *
 * <p>For each example and each group of C/G consecutive channels the layer normalizes by the mean and biased
 * variance over those channels and all spatial/time positions, then applies a learnable per-channel scale
 * {@code gamma} and shift {@code beta} (each optional: {@code scale(false)}, {@code center(false)}). It keeps no running statistics, so training and inference compute the same
 * function and no example's output depends on the rest of the minibatch. G=1 is LayerNorm over (C, spatial);
 * G=C is InstanceNorm.
 *
 * <p>Input: feed-forward, recurrent (NCW/NWC, with time-series masks), 2D convolutional (NCHW/NHWC), 3D
 * convolutional (NCDHW/NDHWC) or flattened convolutional (a preprocessor is added). Output has the input's shape.
 * Like {@code BatchNormalization}, gamma and beta get no L1/L2/weight decay unless
 * {@link Builder#regularizeGammaBeta(boolean)} is set.
 *
 * <p>An activation set on the Builder ({@code .activation(Activation.RELU)}) is applied to the normalized output, as
 * for DL4J's other layers; on the CPU, RELU, LEAKYRELU, SWISH, SIGMOID and TANH are fused into the kernel's loops
 * (no extra pass or stored tensor), any other activation runs through its own {@code getActivation}/{@code backprop}.
 * The default is IDENTITY, and the network-wide {@code NeuralNetConfiguration.Builder.activation(...)} does not apply
 * to this layer: a GroupNorm is plain GroupNorm unless its own Builder says otherwise. Configurations saved before
 * activations existed (they store DL4J's network default, which was never applied) load as plain GroupNorm.
 */
public class GroupNormalization extends FeedForwardLayer {

    public static final int DEFAULT_GROUPS = 32;
    public static final double DEFAULT_EPS = 1e-5;

    // Defaults repeated here for Jackson, which uses the no-arg constructor and then sets the stored fields.
    /** Number of groups; 0 when the group size is fixed instead. */
    private int groups = DEFAULT_GROUPS;
    /** Channels per group; 0 when the number of groups is fixed instead. */
    private int groupSize = 0;
    private double eps = DEFAULT_EPS;
    /** Learnable per-channel scale gamma; without it the scale is 1. */
    private boolean scale = true;
    /** Learnable per-channel shift beta; without it the shift is 0. */
    private boolean center = true;
    private double gammaInit = 1.0;
    private double betaInit = 0.0;
    private boolean regularizeGammaBeta = false;
    /** Layout of the input; null until given by the builder or inferred from the input type. */
    private TensorLayout dataFormat;
    /**
     * Whether the stored activation is applied. True for every configuration built by this version; false (the
     * value Jackson keeps when the property is absent) for files written before activations existed, whose stored
     * activation is DL4J's network default that the layer never applied: they keep meaning plain GroupNorm.
     */
    private boolean appliesActivation;

    /** For Jackson: the defaults, with a stored activation not applied unless the file says so. */
    public GroupNormalization() {
        this(new Builder());
        this.appliesActivation = false;
    }

    private GroupNormalization(Builder builder) {
        super(builder);
        this.groups = builder.groupSize != null ? 0 : builder.groups != null ? builder.groups : DEFAULT_GROUPS;
        this.groupSize = builder.groupSize != null ? builder.groupSize : 0;
        this.eps = builder.eps;
        this.scale = builder.scale;
        this.center = builder.center;
        this.gammaInit = builder.gammaInit;
        this.betaInit = builder.betaInit;
        this.regularizeGammaBeta = builder.regularizeGammaBeta;
        this.dataFormat = builder.dataFormat;
        this.appliesActivation = true;
        if (builder.groupSize != null && groupSize <= 0) {
            throw new IllegalArgumentException(describe() + ": groupSize must be > 0, got " + groupSize);
        }
        if (builder.groupSize == null && groups <= 0) {
            throw new IllegalArgumentException(describe() + ": groups must be > 0, got " + groups);
        }
        if (nIn <= 0 && nOut > 0) {
            nIn = nOut;
        } else if (nIn > 0 && nOut <= 0) {
            nOut = nIn;
        }
        validate();
        initializeConstraints(builder);
    }

    /**
     * Checks the rules every configuration must meet, however it was made: the Builder, the setters, or JSON/YAML
     * (whose values arrive through the setters in any order, so the rules that relate two settings are checked here
     * and at {@link #instantiate}, {@link #setNIn(InputType, boolean)} and {@link #getOutputType}).
     *
     * @throws IllegalArgumentException naming this layer, the value and the rule
     */
    public void validate() {
        requireGroupSetting("groups", groups);
        requireGroupSetting("groupSize", groupSize);
        if (groups > 0 && groupSize > 0) {
            throw new IllegalArgumentException(describe() + ": set groups (" + groups + ") or groupSize ("
                    + groupSize + "), not both");
        }
        if (groups == 0 && groupSize == 0) {
            throw new IllegalArgumentException(describe() + ": groups must be > 0, got 0 (and no groupSize)");
        }
        requireValidEps(eps);
        if (nIn > 0 && nOut > 0 && nIn != nOut) {
            throw new IllegalArgumentException(describe() + ": nIn (" + nIn + ") and nOut (" + nOut
                    + ") are both the channel count and must be equal");
        }
        if (nIn > 0) {
            groupsFor(nIn);
        }
    }

    /** groups and groupSize: one of them is positive, the other 0 ("not used"); never negative. */
    private void requireGroupSetting(String name, int value) {
        if (value < 0) {
            throw new IllegalArgumentException(describe() + ": " + name + " must be > 0, got " + value);
        }
    }

    private void requireValidEps(double value) {
        if (!(value > 0) || Double.isInfinite(value)) {
            throw new IllegalArgumentException(describe() + ": eps must be a finite number > 0, got " + value);
        }
    }

    /**
     * The number of groups for an input of this many channels.
     *
     * @throws IllegalArgumentException naming this layer and the rule when the channels cannot be split that way
     */
    public int groupsFor(long channels) {
        if (groupSize > 0) {
            if (channels % groupSize != 0) {
                throw new IllegalArgumentException(describe() + ": " + channels
                        + " channels are not divisible by groupSize " + groupSize);
            }
            return (int) (channels / groupSize);
        }
        if (groups > channels) {
            throw new IllegalArgumentException(describe() + ": " + groups + " groups are more than the " + channels
                    + " channels (groups must be <= channels)");
        }
        if (channels % groups != 0) {
            throw new IllegalArgumentException(describe() + ": " + channels + " channels are not divisible by "
                    + groups + " groups");
        }
        return groups;
    }

    /** "GroupNormalization 'name'": how every message of this layer starts. */
    public String describe() {
        return describe(layerName);
    }

    private static String describe(String layerName) {
        return "GroupNormalization '" + (layerName == null ? "(unnamed)" : layerName) + "'";
    }

    @Override
    public org.deeplearning4j.nn.api.Layer instantiate(NeuralNetConfiguration conf,
                                                        Collection<TrainingListener> trainingListeners,
                                                        int layerIndex, INDArray layerParamsView,
                                                        boolean initializeParams, DataType networkDataType) {
        if (nIn <= 0) {
            throw new IllegalStateException(describe() + ": the channel count is unknown; set nIn or give the "
                    + "network an input type (setInputType) so it can be inferred");
        }
        validate();
        return RuntimeLayers.wire(new GroupNormalizationLayer(conf, networkDataType), conf, initializer(),
                trainingListeners, layerIndex, layerParamsView, initializeParams);
    }

    @Override
    public ParamInitializer initializer() {
        return GroupNormParamInitializer.getInstance();
    }

    @Override
    public InputType getOutputType(int layerIndex, InputType inputType) {
        validate();
        if (inputType == null || layoutOf(inputType) == null) {
            throw new IllegalStateException(describe() + ": takes feed-forward, recurrent, convolutional or 3D "
                    + "convolutional input, got " + inputType);
        }
        return inputType;
    }

    @Override
    public void setNIn(InputType inputType, boolean override) {
        TensorLayout layout = layoutOf(inputType);
        if (layout == null) {
            throw new IllegalStateException(describe() + ": takes feed-forward, recurrent, convolutional or 3D "
                    + "convolutional input, got " + inputType);
        }
        if (dataFormat != null && dataFormat.rank() != layout.rank()) {
            throw new IllegalStateException(describe() + ": dataFormat " + dataFormat + " is for rank-"
                    + dataFormat.rank() + " arrays but the input type " + inputType + " is rank " + layout.rank());
        }
        if (nIn <= 0 || override) {
            nIn = TensorLayout.channelsOf(inputType);
            nOut = nIn;
            if (dataFormat == null || override) {
                dataFormat = layout;
            }
        }
        validate();
    }

    /**
     * Sets the channel count, which is also nOut: DL4J calls this alone when an earlier layer's nOut changes
     * ({@code TransferLearning}'s {@code nOutReplace}).
     */
    @Override
    public void setNIn(long nIn) {
        this.nIn = nIn;
        this.nOut = nIn;
    }

    /** The layout of an input type; CNNFlat counts as NCHW since the preprocessor restores that shape. */
    private static TensorLayout layoutOf(InputType inputType) {
        if (inputType != null && inputType.getType() == InputType.Type.CNNFlat) {
            return TensorLayout.NCHW;
        }
        return inputType == null ? null : TensorLayout.of(inputType);
    }

    @Override
    public InputPreProcessor getPreProcessorForInputType(InputType inputType) {
        if (inputType.getType() == InputType.Type.CNNFlat) {
            InputType.InputTypeConvolutionalFlat flat = (InputType.InputTypeConvolutionalFlat) inputType;
            return new FeedForwardToCnnPreProcessor(flat.getHeight(), flat.getWidth(), flat.getDepth());
        }
        return null;
    }

    @Override
    public List<Regularization> getRegularizationByParam(String paramName) {
        if (!regularizeGammaBeta) {
            return null;
        }
        return GroupNormParamInitializer.GAMMA.equals(paramName) ? regularization : regularizationBias;
    }

    @Override
    public boolean isPretrainParam(String paramName) {
        return false;
    }

    @Override
    public LayerMemoryReport getMemoryReport(InputType inputType) {
        InputType outputType = getOutputType(-1, inputType);
        long numParams = initializer().numParams(this);
        long updaterStateSize = 0;
        for (String key : initializer().paramKeys(this)) {
            updaterStateSize += getUpdaterByParam(key).stateSize(nIn);
        }
        long perExample = inputType.arrayElementsPerExample();
        // Per example: the statistics (mean and 1/std per group), plus the working arrays of the portable engine
        // (what runs off the CPU), an upper bound for the CPU kernel, which needs none (its per-thread slab copies
        // for HALF are not per example): forward the
        // centered values and, for channels-last or HALF input, a channels-first copy (2 tensors); backward also
        // the output-gradient copy (3).
        long statsPerExample = 2L * groupsFor(nIn);
        return new LayerMemoryReport.Builder(layerName, GroupNormalization.class, inputType, outputType)
                .standardMemory(numParams, updaterStateSize)
                .workingMemory(0, statsPerExample + 2 * perExample, 2L * nIn, statsPerExample + 3 * perExample)
                .cacheMemory(MemoryReport.CACHE_MODE_ALL_ZEROS, MemoryReport.CACHE_MODE_ALL_ZEROS)
                .build();
    }

    @Override
    public GroupNormalization clone() {
        return (GroupNormalization) super.clone();
    }

    public int getGroups() {
        return groups;
    }

    /** Groups per layer; 0 when {@link #setGroupSize} fixes the group size instead. */
    public void setGroups(int groups) {
        requireGroupSetting("groups", groups);
        this.groups = groups;
    }

    public int getGroupSize() {
        return groupSize;
    }

    /** Channels per group; 0 when {@link #setGroups} fixes the number of groups instead. */
    public void setGroupSize(int groupSize) {
        requireGroupSetting("groupSize", groupSize);
        this.groupSize = groupSize;
    }

    public double getEps() {
        return eps;
    }

    public void setEps(double eps) {
        requireValidEps(eps);
        this.eps = eps;
    }

    /** Whether the layer has a learnable scale gamma (else it scales by 1). */
    public boolean isScale() {
        return scale;
    }

    public void setScale(boolean scale) {
        this.scale = scale;
    }

    /** Whether the layer has a learnable shift beta (else it shifts by 0). */
    public boolean isCenter() {
        return center;
    }

    public void setCenter(boolean center) {
        this.center = center;
    }

    /** The activation applied to the normalized output: IDENTITY unless one was set on this layer's Builder. */
    @JsonIgnore
    public IActivation fusedActivation() {
        return appliesActivation && activationFn != null ? activationFn : new ActivationIdentity();
    }

    public boolean isAppliesActivation() {
        return appliesActivation;
    }

    public void setAppliesActivation(boolean appliesActivation) {
        this.appliesActivation = appliesActivation;
    }

    /** True when the layer has both gamma and beta. Not stored: {@code scale} and {@code center} are. */
    @JsonIgnore
    public boolean isAffine() {
        return scale && center;
    }

    /**
     * Both gamma and beta, or neither. Also reads the {@code "affine"} property of configurations saved before
     * {@code scale} and {@code center} existed.
     */
    @JsonProperty("affine")
    public void setAffine(boolean affine) {
        this.scale = affine;
        this.center = affine;
    }

    public double getGammaInit() {
        return gammaInit;
    }

    public void setGammaInit(double gammaInit) {
        this.gammaInit = gammaInit;
    }

    public double getBetaInit() {
        return betaInit;
    }

    public void setBetaInit(double betaInit) {
        this.betaInit = betaInit;
    }

    public boolean isRegularizeGammaBeta() {
        return regularizeGammaBeta;
    }

    public void setRegularizeGammaBeta(boolean regularizeGammaBeta) {
        this.regularizeGammaBeta = regularizeGammaBeta;
    }

    /** The input layout, or null when neither given nor inferred yet (then DL4J's default for the rank applies). */
    public TensorLayout getDataFormat() {
        return dataFormat;
    }

    public void setDataFormat(TensorLayout dataFormat) {
        this.dataFormat = dataFormat;
    }

    @Override
    public boolean equals(Object o) {
        if (this == o) {
            return true;
        }
        if (!(o instanceof GroupNormalization) || !super.equals(o)) {
            return false;
        }
        GroupNormalization that = (GroupNormalization) o;
        return groups == that.groups && groupSize == that.groupSize && Double.compare(eps, that.eps) == 0
                && scale == that.scale && center == that.center && Double.compare(gammaInit, that.gammaInit) == 0
                && Double.compare(betaInit, that.betaInit) == 0 && regularizeGammaBeta == that.regularizeGammaBeta
                && dataFormat == that.dataFormat && appliesActivation == that.appliesActivation;
    }

    @Override
    public int hashCode() {
        return Objects.hash(super.hashCode(), groups, groupSize, eps, scale, center, gammaInit, betaInit,
                regularizeGammaBeta, dataFormat, appliesActivation);
    }

    @Override
    public String toString() {
        return "GroupNormalization(name=" + layerName + ", nIn=" + nIn + ", "
                + (groupSize > 0 ? "groupSize=" + groupSize : "groups=" + groups) + ", eps=" + eps + ", scale="
                + scale + ", center=" + center + ", dataFormat=" + dataFormat + ", activation=" + fusedActivation()
                + ")";
    }

    /** Builder with DL4J's usual fluent style; unset options keep the defaults documented on each method. */
    public static class Builder extends FeedForwardLayer.Builder<Builder> {
        private Integer groups;
        private Integer groupSize;
        private double eps = DEFAULT_EPS;
        private boolean scale = true;
        private boolean center = true;
        private double gammaInit = 1.0;
        private double betaInit = 0.0;
        private boolean regularizeGammaBeta = false;
        private TensorLayout dataFormat;

        public Builder() {
        }

        /** Shorthand for {@code new Builder().groups(groups)}. */
        public Builder(int groups) {
            groups(groups);
        }

        /** Number of channel groups G (default 32); the channel count must be divisible by it. */
        public Builder groups(int groups) {
            this.groups = groups;
            return this;
        }

        /** Channels per group, the alternative to {@link #groups(int)}: G = C / groupSize. */
        public Builder groupSize(int groupSize) {
            this.groupSize = groupSize;
            return this;
        }

        /** Added to the variance inside the square root (default 1e-5); must be &gt; 0. */
        public Builder eps(double eps) {
            this.eps = eps;
            return this;
        }

        /**
         * Learnable per-channel gamma and beta (default true); false gives a layer without parameters. Shorthand
         * for {@code scale(affine).center(affine)}.
         */
        public Builder affine(boolean affine) {
            this.scale = affine;
            this.center = affine;
            return this;
        }

        /** Learnable per-channel scale gamma (default true); without it the output is not scaled (gamma = 1). */
        public Builder scale(boolean scale) {
            this.scale = scale;
            return this;
        }

        /** Learnable per-channel shift beta (default true); without it the output is not shifted (beta = 0). */
        public Builder center(boolean center) {
            this.center = center;
            return this;
        }

        /** Initial value of every gamma (default 1). */
        public Builder gammaInit(double gammaInit) {
            this.gammaInit = gammaInit;
            return this;
        }

        /** Initial value of every beta (default 0). */
        public Builder betaInit(double betaInit) {
            this.betaInit = betaInit;
            return this;
        }

        /**
         * Apply the layer's (or the network's) regularization to gamma and its bias regularization to beta.
         * Default false: like BatchNormalization, the normalization parameters are not regularized.
         */
        public Builder regularizeGammaBeta(boolean regularizeGammaBeta) {
            this.regularizeGammaBeta = regularizeGammaBeta;
            return this;
        }

        /** Input layout; by default inferred from the network's input type, else DL4J's default for the rank. */
        public Builder dataFormat(TensorLayout dataFormat) {
            this.dataFormat = dataFormat;
            return this;
        }

        public Builder dataFormat(CNN2DFormat format) {
            return dataFormat(TensorLayout.of(format));
        }

        public Builder dataFormat(RNNFormat format) {
            return dataFormat(TensorLayout.of(format));
        }

        public Builder dataFormat(Convolution3D.DataFormat format) {
            return dataFormat(TensorLayout.of(format));
        }

        @Override
        @SuppressWarnings("unchecked")
        public GroupNormalization build() {
            if (activationFn == null) {
                // Set here so that the network-wide default activation, applied only to layers without one, never
                // reaches a GroupNorm.
                activationFn = new ActivationIdentity();
            }
            if (groups != null && groupSize != null) {
                throw new IllegalArgumentException(describe(layerName) + ": set groups (" + groups
                        + ") or groupSize (" + groupSize + "), not both");
            }
            return new GroupNormalization(this);
        }
    }
}
