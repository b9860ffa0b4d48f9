package org.groupnorm.dl4j;

import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.deeplearning4j.nn.api.ParamInitializer;
import org.deeplearning4j.nn.conf.NeuralNetConfiguration;
import org.deeplearning4j.nn.conf.layers.Layer;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.indexing.NDArrayIndex;

/**
 * GroupNorm's parameters: {@code gamma} then {@code beta}, one value per channel, shape [C], in one flat view. A
 * layer with {@code affine(false)} has none. Neither counts as a weight or a bias, so global L1/L2 and bias
 * settings do not reach them unless the layer opts in.
 */
public final class GroupNormParamInitializer implements ParamInitializer {

    public static final String GAMMA = "gamma";
    public static final String BETA = "beta";

    private static final GroupNormParamInitializer INSTANCE = new GroupNormParamInitializer();

    private GroupNormParamInitializer() {
    }

    public static GroupNormParamInitializer getInstance() {
        return INSTANCE;
    }

    @Override
    public long numParams(NeuralNetConfiguration conf) {
        return numParams(conf.getLayer());
    }

    @Override
    public long numParams(Layer layer) {
        GroupNormalization gn = (GroupNormalization) layer;
        return gn.isAffine() ? 2 * gn.getNIn() : 0;
    }

    @Override
    public List<String> paramKeys(Layer layer) {
        return ((GroupNormalization) layer).isAffine() ? Arrays.asList(GAMMA, BETA) : Collections.emptyList();
    }

    @Override
    public List<String> weightKeys(Layer layer) {
        return Collections.emptyList();
    }

    @Override
    public List<String> biasKeys(Layer layer) {
        return Collections.emptyList();
    }

    @Override
    public boolean isWeightParam(Layer layer, String key) {
        return false;
    }

    @Override
    public boolean isBiasParam(Layer layer, String key) {
        return false;
    }

    @Override
    public Map<String, INDArray> init(NeuralNetConfiguration conf, INDArray paramsView, boolean initializeParams) {
        GroupNormalization gn = (GroupNormalization) conf.getLayer();
        Map<String, INDArray> params = views(gn, paramsView);
        if (initializeParams && gn.isAffine()) {
            params.get(GAMMA).assign(gn.getGammaInit());
            params.get(BETA).assign(gn.getBetaInit());
        }
        for (String key : params.keySet()) {
            conf.addVariable(key);
        }
        return params;
    }

    @Override
    public Map<String, INDArray> getGradientsFromFlattened(NeuralNetConfiguration conf, INDArray gradientView) {
        return views((GroupNormalization) conf.getLayer(), gradientView);
    }

    /** gamma and beta as views of the flat array (which is null or empty when the layer has no parameters). */
    private static Map<String, INDArray> views(GroupNormalization gn, INDArray flat) {
        Map<String, INDArray> views = Collections.synchronizedMap(new LinkedHashMap<>());
        if (gn.isAffine()) {
            long channels = gn.getNIn();
            INDArray vector = flat.reshape(flat.length());
            views.put(GAMMA, vector.get(NDArrayIndex.interval(0, channels)));
            views.put(BETA, vector.get(NDArrayIndex.interval(channels, 2 * channels)));
        }
        return views;
    }
}
