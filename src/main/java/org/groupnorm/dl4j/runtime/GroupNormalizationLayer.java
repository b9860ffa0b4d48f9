package org.groupnorm.dl4j.runtime;

import java.util.Arrays;
import org.deeplearning4j.exception.DL4JInvalidInputException;
import org.deeplearning4j.nn.api.MaskState;
import org.deeplearning4j.nn.conf.NeuralNetConfiguration;
import org.deeplearning4j.nn.gradient.DefaultGradient;
import org.deeplearning4j.nn.gradient.Gradient;
import org.deeplearning4j.nn.layers.BaseLayer;
import org.deeplearning4j.nn.workspace.LayerWorkspaceMgr;
import org.groupnorm.dl4j.GroupNormParamInitializer;
import org.groupnorm.dl4j.GroupNormalization;
import org.groupnorm.dl4j.TensorLayout;
import org.groupnorm.dl4j.kernel.GroupNormKernel;
import org.nd4j.common.primitives.Pair;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;

/**
 * The runtime GroupNorm layer that {@link GroupNormalization#instantiate} returns. It validates each input against
 * the configuration, picks an engine (the CPU kernel where it applies, the portable engine elsewhere) and hands DL4J
 * exact gradients. Parameters live in DL4J's flat views, so {@code setParam}, {@code setParams} and
 * {@code getParam} behave as for every built-in layer.
 */
public class GroupNormalizationLayer extends BaseLayer<GroupNormalization> {

    /** How the layer executes GroupNorm. */
    public enum Engine {
        /**
         * The CPU kernel where it applies (CPU backend; FLOAT, DOUBLE, HALF or BFLOAT16; no activation or one it
         * fuses), else the portable engine.
         */
        AUTO,
        /** Always the CPU kernel (CPU backend; an activation it fuses, else an error). */
        KERNEL,
        /** Always the backend-neutral engine of ND4J operations: what runs on CUDA. */
        PORTABLE,
        /**
         * Always {@link org.groupnorm.dl4j.GroupNorm#groupNorm}, the public SameDiff definition, run as a
         * differentiated graph: slow, for checking that function against the others.
         */
        SAMEDIFF;

        static final String PROPERTY = "groupnorm.engine";

        /** The default for new layers: system property {@code groupnorm.engine}, else AUTO. */
        static Engine fromSystemProperty() {
            String value = System.getProperty(PROPERTY, "auto").trim();
            for (Engine engine : values()) {
                if (engine.name().equalsIgnoreCase(value)) {
                    return engine;
                }
            }
            throw new IllegalArgumentException("-D" + PROPERTY + "=" + value + " is not an engine; use one of "
                    + java.util.Arrays.stream(values()).map(e -> e.name().toLowerCase())
                    .collect(java.util.stream.Collectors.joining(", ")));
        }
    }

    private Engine engine = Engine.fromSystemProperty();
    private final KernelEngine kernel = new KernelEngine();
    private final PortableEngine portable = new PortableEngine();
    private final SameDiffEngine sameDiff = new SameDiffEngine();
    /** The last forward pass of the current input (its engine and statistics); cleared whenever the input changes. */
    private ForwardPass<?> lastForward;

    public GroupNormalizationLayer(NeuralNetConfiguration conf, DataType dataType) {
        super(conf, dataType);
    }

    public Engine getEngine() {
        return engine;
    }

    /** Chooses how this layer executes; every engine computes the same function. */
    public void setEngine(Engine engine) {
        this.engine = engine;
    }

    @Override
    public Type type() {
        return Type.NORMALIZATION;
    }

    @Override
    public boolean isPretrainLayer() {
        return false;
    }

    @Override
    public void clearNoiseWeightParams() {
        // GroupNorm parameters take no weight noise.
    }

    @Override
    public INDArray activate(boolean training, LayerWorkspaceMgr workspaceMgr) {
        assertInputSet(false);
        applyDropOutIfNecessary(training, workspaceMgr);
        GroupNormCall call = call();
        return forward(engineFor(call), call, workspaceMgr);
    }

    private <S> INDArray forward(GroupNormEngine<S> engine, GroupNormCall call, LayerWorkspaceMgr workspaceMgr) {
        GroupNormEngine.Forward<S> forward = engine.forward(call, workspaceMgr);
        lastForward = new ForwardPass<>(engine, forward.stats());
        return forward.y();
    }

    @Override
    public void setInput(INDArray input, LayerWorkspaceMgr workspaceMgr) {
        super.setInput(input, workspaceMgr);
        lastForward = null;
    }

    @Override
    public Pair<Gradient, INDArray> backpropGradient(INDArray epsilon, LayerWorkspaceMgr workspaceMgr) {
        assertInputSet(true);
        GroupNormCall call = call();
        if (!Arrays.equals(epsilon.shape(), call.x().shape())) {
            throw new DL4JInvalidInputException(layerConf().describe() + ": gradient of shape "
                    + Arrays.toString(epsilon.shape()) + " does not match the input shape "
                    + Arrays.toString(call.x().shape()));
        }
        INDArray dGamma = gradientViews == null ? null : gradientViews.get(GroupNormParamInitializer.GAMMA);
        INDArray dBeta = gradientViews == null ? null : gradientViews.get(GroupNormParamInitializer.BETA);
        INDArray dy = epsilon.castTo(dataType);
        GroupNormEngine<?> engine = engineFor(call);
        INDArray dx = lastForward != null && lastForward.engine() == engine
                ? lastForward.backward(call, dy, dGamma, dBeta, workspaceMgr)
                : engine.backward(call, null, dy, dGamma, dBeta, workspaceMgr);
        Gradient gradient = new DefaultGradient();
        if (dGamma != null) {
            gradient.gradientForVariable().put(GroupNormParamInitializer.GAMMA, dGamma);
        }
        if (dBeta != null) {
            gradient.gradientForVariable().put(GroupNormParamInitializer.BETA, dBeta);
        }
        return new Pair<>(gradient, backpropDropOutIfPresent(dx));
    }

    @Override
    public Pair<INDArray, MaskState> feedForwardMaskArray(INDArray maskArray, MaskState currentMaskState,
                                                          int minibatchSize) {
        // Output positions are where input positions are: the mask passes through unchanged.
        this.maskArray = maskArray;
        this.maskState = currentMaskState;
        return maskArray == null ? null : new Pair<>(maskArray, currentMaskState);
    }

    private GroupNormEngine<?> engineFor(GroupNormCall call) {
        switch (engine) {
            case KERNEL:
                if (!KernelEngine.fuses(call)) {
                    throw new IllegalStateException(layerConf().describe() + ": the KERNEL engine fuses only the "
                            + "IDENTITY, RELU, LEAKYRELU, SIGMOID, TANH and SWISH activations, not "
                            + call.activation() + "; use the AUTO or PORTABLE engine");
                }
                return kernel;
            case PORTABLE:
                return portable;
            case SAMEDIFF:
                return sameDiff;
            default:
                return GroupNormKernel.supports(call.x()) && KernelEngine.fuses(call) ? kernel : portable;
        }
    }

    /** The current input and parameters, checked against the configuration. */
    private GroupNormCall call() {
        GroupNormalization conf = layerConf();
        INDArray x = input.castTo(dataType);
        TensorLayout layout = conf.getDataFormat() != null ? conf.getDataFormat() : layoutForRank(x.rank());
        if (x.rank() != layout.rank()) {
            throw new DL4JInvalidInputException(conf.describe() + ": expected a rank-" + layout.rank() + " "
                    + layout + " input, got rank " + x.rank() + " with shape " + Arrays.toString(x.shape()));
        }
        long channels = x.size(layout.channelAxis());
        if (channels != conf.getNIn()) {
            throw new DL4JInvalidInputException(conf.describe() + ": input has " + channels + " channels on axis "
                    + layout.channelAxis() + " (" + layout + ", shape " + Arrays.toString(x.shape())
                    + ") but the layer was configured with nIn=" + conf.getNIn());
        }
        return new GroupNormCall(x, getParam(GroupNormParamInitializer.GAMMA),
                getParam(GroupNormParamInitializer.BETA), validatedMask(x, layout), conf.groupsFor(channels),
                conf.getEps(), conf.fusedActivation(), layout);
    }

    private TensorLayout layoutForRank(int rank) {
        try {
            return TensorLayout.defaultForRank(rank);
        } catch (IllegalArgumentException e) {
            throw new DL4JInvalidInputException(layerConf().describe() + ": " + e.getMessage());
        }
    }

    /** The mask as [N, S] per-position presence, or null; only recurrent and FF inputs can be masked. */
    private INDArray validatedMask(INDArray x, TensorLayout layout) {
        if (maskArray == null) {
            return null;
        }
        long positions = layout.spatialSize(x.shape());
        boolean perPosition = (layout.rank() == 3 || layout == TensorLayout.FF)
                && maskArray.rank() == 2 && maskArray.size(0) == x.size(0) && maskArray.size(1) == positions;
        if (!perPosition) {
            throw new DL4JInvalidInputException(layerConf().describe() + ": a mask of shape "
                    + Arrays.toString(maskArray.shape()) + " does not fit " + layout + " input of shape "
                    + Arrays.toString(x.shape()) + "; masks are supported as [N, T] for recurrent input and "
                    + "[N, 1] for feed-forward input");
        }
        return maskArray;
    }

    /** An engine's forward pass of the current input and what it kept for the backward pass. */
    private record ForwardPass<S>(GroupNormEngine<S> engine, S stats) {
        INDArray backward(GroupNormCall call, INDArray dy, INDArray dGamma, INDArray dBeta,
                          LayerWorkspaceMgr workspaceMgr) {
            return engine.backward(call, stats, dy, dGamma, dBeta, workspaceMgr);
        }
    }
}
