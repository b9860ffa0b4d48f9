package org.groupnorm.dl4j;

import org.deeplearning4j.nn.conf.NeuralNetConfiguration;
import org.deeplearning4j.nn.gradient.Gradient;
import org.deeplearning4j.nn.workspace.LayerWorkspaceMgr;
import org.groupnorm.dl4j.runtime.GroupNormalizationLayer;
import org.nd4j.common.primitives.Pair;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

/** One stand-alone runtime GroupNorm layer, driven directly (no network around it) on a chosen engine. */
final class GroupNormHarness {

    final GroupNormalizationLayer layer;
    private final LayerWorkspaceMgr workspaces = LayerWorkspaceMgr.noWorkspaces();

    GroupNormHarness(GroupNormalization conf, DataType dataType, GroupNormalizationLayer.Engine engine) {
        NeuralNetConfiguration nnc = new NeuralNetConfiguration.Builder().dataType(dataType).layer(conf).build();
        long numParams = conf.initializer().numParams(conf);
        INDArray params = numParams > 0 ? Nd4j.create(dataType, 1, numParams) : null;
        layer = (GroupNormalizationLayer) conf.instantiate(nnc, null, 0, params, true, dataType);
        if (numParams > 0) {
            layer.setBackpropGradientsViewArray(Nd4j.create(dataType, 1, numParams));
        }
        layer.setEngine(engine);
    }

    GroupNormHarness withParams(INDArray gamma, INDArray beta) {
        layer.setParam(GroupNormParamInitializer.GAMMA, gamma.castTo(layer.getParam("gamma").dataType()));
        layer.setParam(GroupNormParamInitializer.BETA, beta.castTo(layer.getParam("beta").dataType()));
        return this;
    }

    INDArray forward(INDArray x) {
        return forward(x, null);
    }

    INDArray forward(INDArray x, INDArray mask) {
        layer.setInput(x, workspaces);
        layer.setMaskArray(mask);
        return layer.activate(true, workspaces);
    }

    /** dx and the parameter gradients (copied, since the layer reuses its gradient views). */
    Pair<Gradient, INDArray> backward(INDArray dy) {
        Pair<Gradient, INDArray> result = layer.backpropGradient(dy, workspaces);
        for (String key : result.getFirst().gradientForVariable().keySet()) {
            result.getFirst().setGradientFor(key, result.getFirst().getGradientFor(key).dup());
        }
        return result;
    }
}
