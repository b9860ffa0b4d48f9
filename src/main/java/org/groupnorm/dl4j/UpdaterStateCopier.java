package org.groupnorm.dl4j;

import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Function;
import org.deeplearning4j.nn.api.Trainable;
import org.deeplearning4j.nn.updater.UpdaterBlock;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.indexing.NDArrayIndex;

/**
 * Copies updater state (Adam's moments, momentum, ...) parameter by parameter between two networks whose updater
 * blocks are laid out differently. Within a block, DL4J's updaters store k consecutive segments (one per state
 * kind) each as long as the block's parameters, so a parameter at block offsets [a, b) owns [j*n + a, j*n + b) of
 * segment j. Parameters without a counterpart (the new GroupNorm gamma/beta) keep their fresh state.
 */
final class UpdaterStateCopier {

    private UpdaterStateCopier() {
    }

    /** Where one parameter's state lives. */
    private record Slot(INDArray view, long blockLength, long start, long end) {
        long segments() {
            return view.length() / blockLength;
        }

        INDArray segment(long j) {
            return view.reshape(view.length()).get(NDArrayIndex.interval(j * blockLength + start,
                    j * blockLength + end));
        }
    }

    static void copy(List<UpdaterBlock> from, List<UpdaterBlock> to, Function<Trainable, String> layerKey) {
        Map<String, Slot> source = slots(from, layerKey);
        for (Map.Entry<String, Slot> target : slots(to, layerKey).entrySet()) {
            Slot original = source.get(target.getKey());
            if (original == null || original.segments() != target.getValue().segments()
                    || original.end() - original.start() != target.getValue().end() - target.getValue().start()) {
                continue;
            }
            for (long j = 0; j < original.segments(); j++) {
                target.getValue().segment(j).assign(original.segment(j));
            }
        }
    }

    private static Map<String, Slot> slots(List<UpdaterBlock> blocks, Function<Trainable, String> layerKey) {
        Map<String, Slot> slots = new HashMap<>();
        for (UpdaterBlock block : blocks) {
            INDArray view = block.getUpdaterView();
            if (view == null || view.length() == 0) {
                continue;
            }
            long blockStart = block.getParamOffsetStart();
            long blockLength = block.getParamOffsetEnd() - blockStart;
            for (UpdaterBlock.ParamState param : block.getLayersAndVariablesInBlock()) {
                slots.put(layerKey.apply(param.getLayer()) + "/" + param.getParamName(), new Slot(view, blockLength,
                        param.getParamOffsetStart() - blockStart, param.getParamOffsetEnd() - blockStart));
            }
        }
        return slots;
    }
}
