package org.groupnorm.dl4j.runtime;

import java.util.Arrays;
import org.deeplearning4j.nn.conf.NeuralNetConfiguration;
import org.deeplearning4j.nn.gradient.Gradient;
import org.deeplearning4j.nn.layers.convolution.ConvolutionLayer;
import org.deeplearning4j.nn.params.ConvolutionParamInitializer;
import org.deeplearning4j.nn.workspace.LayerWorkspaceMgr;
import org.groupnorm.dl4j.WeightStandardizedConvolution;
import org.groupnorm.dl4j.kernel.WeightStandardizationKernel;
import org.nd4j.common.primitives.Pair;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.memory.MemoryWorkspace;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

/**
 * The runtime layer {@link WeightStandardizedConvolution#instantiate} returns: DL4J's own convolution (built-in,
 * MKL-DNN or cuDNN, whichever DL4J picks), run with standardized weights. The parameter stays the raw {@code W};
 * DL4J reads the weights it convolves with through {@link #getParamWithNoise}, which is where they are standardized,
 * and the gradient it computes for them is carried through the standardization into {@code W} after its backward.
 *
 * <p>The standardization runs on the CPU kernel's loops ({@link WeightStandardizationKernel}) where the arrays allow
 * and the engine is AUTO or KERNEL, else as ND4J operations ({@link WeightStandardization}: PORTABLE, any other
 * backend); both compute the same function. The engine comes from {@code -Dgroupnorm.engine} as for GroupNorm.
 */
public class WeightStandardizedConvolutionLayer extends ConvolutionLayer {

    /**
     * Where the standardized weights are written for DL4J's convolution to read: rewritten on every read of the
     * weights, never carried from one call to the next; kept only to avoid a fresh allocation per call.
     */
    private INDArray standardizedWeights;

    private GroupNormalizationLayer.Engine engine = GroupNormalizationLayer.Engine.fromSystemProperty();

    public WeightStandardizedConvolutionLayer(NeuralNetConfiguration conf, DataType dataType) {
        super(conf, dataType);
    }

    public GroupNormalizationLayer.Engine getEngine() {
        return engine;
    }

    /** Chooses how this layer standardizes; PORTABLE (and SAMEDIFF, which has no graph here) mean ND4J operations. */
    public void setEngine(GroupNormalizationLayer.Engine engine) {
        this.engine = engine;
    }

    private boolean onKernel(INDArray... arrays) {
        return (engine == GroupNormalizationLayer.Engine.AUTO || engine == GroupNormalizationLayer.Engine.KERNEL)
                && WeightStandardizationKernel.supports(arrays);
    }

    private double eps() {
        return ((WeightStandardizedConvolution) conf().getLayer()).getEps();
    }

    @Override
    protected INDArray getParamWithNoise(String param, boolean training, LayerWorkspaceMgr workspaceMgr) {
        INDArray value = super.getParamWithNoise(param, training, workspaceMgr);
        if (!ConvolutionParamInitializer.WEIGHT_KEY.equals(param)) {
            return value;
        }
        INDArray out = standardizedWeightsLike(value);
        if (onKernel(value, out)) {
            WeightStandardizationKernel.standardize(value, out, eps());
        } else {
            WeightStandardization.standardize(value, out, eps());
        }
        return out;
    }

    @Override
    public Pair<Gradient, INDArray> backpropGradient(INDArray epsilon, LayerWorkspaceMgr workspaceMgr) {
        // The weights DL4J convolves with in this backward: W, or W with this step's weight noise.
        INDArray weights = super.getParamWithNoise(ConvolutionParamInitializer.WEIGHT_KEY, true, workspaceMgr);
        Pair<Gradient, INDArray> result = super.backpropGradient(epsilon, workspaceMgr);
        INDArray weightGradient = result.getFirst().getGradientFor(ConvolutionParamInitializer.WEIGHT_KEY);
        if (onKernel(weights, weightGradient)) {
            WeightStandardizationKernel.backward(weights, weightGradient, eps());
        } else {
            WeightStandardization.backward(weights, weightGradient, eps());
        }
        return result;
    }

    private INDArray standardizedWeightsLike(INDArray weights) {
        if (standardizedWeights == null || standardizedWeights.dataType() != weights.dataType()
                || !Arrays.equals(standardizedWeights.shape(), weights.shape())) {
            try (MemoryWorkspace ignored = Nd4j.getMemoryManager().scopeOutOfWorkspaces()) {
                standardizedWeights = Nd4j.create(weights.dataType(), weights.shape(), 'c');
            }
        }
        return standardizedWeights;
    }
}
