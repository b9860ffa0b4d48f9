package org.groupnorm.dl4j.examples.support;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.List;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.dataset.DataSet;
import org.nd4j.linalg.factory.Nd4j;

/**
 * Fashion-MNIST (Zalando, MIT licence): 28x28 grayscale images of 10 kinds of clothing, as DL4J {@link DataSet}s with
 * features [N, 1, 28, 28] scaled to [0, 1] and one-hot labels [N, 10].
 *
 * <p>Where the files come from, first match wins: a folder the user names; the full set that Debian's
 * {@code dataset-fashion-mnist} package installs under {@value #SYSTEM_FOLDER}; the stratified subset shipped in this
 * repository under {@value #EMBEDDED_FOLDER} (10,000 training and 2,000 test images), so the examples run on a fresh
 * machine without any download.
 */
public final class FashionMnist {

    public static final String SYSTEM_FOLDER = "/usr/share/datasets/fashion-mnist";
    public static final String EMBEDDED_FOLDER = "examples/data/fashion-mnist-subset";
    public static final int CLASSES = 10;
    public static final int SIZE = 28;
    public static final String[] CLASS_NAMES = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
            "Shirt", "Sneaker", "Bag", "Ankle boot"};

    private static final String TRAIN = "train";
    private static final String TEST = "t10k";

    private final Path folder;

    private FashionMnist(Path folder) {
        this.folder = folder;
    }

    /**
     * The data in {@code folder}, or, when it is null, in the first of the system and embedded folders that holds
     * it.
     *
     * @throws IdxFile.DataFileException naming the folders tried and the files expected when none holds them
     */
    public static FashionMnist locate(Path folder) {
        if (folder != null) {
            return new FashionMnist(requireFiles(folder));
        }
        for (Path candidate : new Path[]{Paths.get(SYSTEM_FOLDER), Paths.get(EMBEDDED_FOLDER)}) {
            if (findFile(candidate, TRAIN, "images-idx3") != null) {
                return new FashionMnist(requireFiles(candidate));
            }
        }
        throw new IdxFile.DataFileException(Paths.get(EMBEDDED_FOLDER).toAbsolutePath(), "no Fashion-MNIST files "
                + "here nor in " + SYSTEM_FOLDER + ": run from the repository root (which ships a subset), install "
                + "the full set with 'apt-get install dataset-fashion-mnist', or pass a folder holding "
                + "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and "
                + "t10k-labels-idx1-ubyte (each raw or .gz)");
    }

    /**
     * The data an example's command line names: {@code --data DIR}, or nothing for {@link #locate}'s defaults.
     *
     * @throws IllegalArgumentException for any other arguments, with the usage
     */
    public static FashionMnist fromArgs(String... args) {
        if (args.length == 0) {
            return locate(null);
        }
        if (args.length == 2 && args[0].equals("--data")) {
            return locate(Paths.get(args[1]));
        }
        throw new IllegalArgumentException("usage: [--data DIR] (a folder with the Fashion-MNIST idx files); got "
                + String.join(" ", args));
    }

    public Path folder() {
        return folder;
    }

    /** Whether this is the subset shipped in the repository rather than a full set. */
    public boolean isEmbeddedSubset() {
        return folder.toAbsolutePath().normalize().equals(Paths.get(EMBEDDED_FOLDER).toAbsolutePath().normalize());
    }

    /**
     * Training images: the first {@code perClass} images of each class in file order (all of them when
     * {@code perClass} is 0 or more than a class holds), in file order.
     */
    public DataSet train(int perClass) {
        return load(TRAIN, perClass);
    }

    /** Test images, selected as in {@link #train}. */
    public DataSet test(int perClass) {
        return load(TEST, perClass);
    }

    private DataSet load(String split, int perClass) {
        IdxFile images = IdxFile.read(findFile(folder, split, "images-idx3"), 3);
        IdxFile labels = IdxFile.read(findFile(folder, split, "labels-idx1"), 1);
        int[] imageDims = images.dimensions();
        if (imageDims[1] != SIZE || imageDims[2] != SIZE) {
            throw new IdxFile.DataFileException(images.path(), "expected " + SIZE + "x" + SIZE + " images, found "
                    + imageDims[1] + "x" + imageDims[2]);
        }
        int count = labels.dimensions()[0];
        if (imageDims[0] != count) {
            throw new IdxFile.DataFileException(images.path(), "holds " + imageDims[0] + " images but "
                    + labels.path().getFileName() + " holds " + count + " labels");
        }
        List<Integer> chosen = new ArrayList<>();
        int[] taken = new int[CLASSES];
        for (int i = 0; i < count; i++) {
            int label = labels.unsigned(i);
            if (label >= CLASSES) {
                throw new IdxFile.DataFileException(labels.path(), "label " + label + " at index " + i
                        + " is outside 0.." + (CLASSES - 1));
            }
            if (perClass <= 0 || taken[label] < perClass) {
                taken[label]++;
                chosen.add(i);
            }
        }
        int pixels = SIZE * SIZE;
        float[] features = new float[chosen.size() * pixels];
        float[] oneHot = new float[chosen.size() * CLASSES];
        for (int row = 0; row < chosen.size(); row++) {
            int image = chosen.get(row);
            for (int p = 0; p < pixels; p++) {
                features[row * pixels + p] = images.unsigned(image * pixels + p) / 255f;
            }
            oneHot[row * CLASSES + labels.unsigned(image)] = 1f;
        }
        INDArray x = Nd4j.create(features, new long[]{chosen.size(), 1, SIZE, SIZE}, DataType.FLOAT);
        INDArray y = Nd4j.create(oneHot, new long[]{chosen.size(), CLASSES}, DataType.FLOAT);
        return new DataSet(x, y);
    }

    private static Path requireFiles(Path folder) {
        for (String split : new String[]{TRAIN, TEST}) {
            for (String kind : new String[]{"images-idx3", "labels-idx1"}) {
                if (findFile(folder, split, kind) == null) {
                    throw new IdxFile.DataFileException(folder.resolve(split + "-" + kind + "-ubyte"),
                            "file not found (neither raw nor .gz); a Fashion-MNIST folder holds "
                                    + "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and "
                                    + "t10k-labels-idx1-ubyte, each raw or .gz");
                }
            }
        }
        return folder;
    }

    /** {@code <split>-<kind>-ubyte} or its .gz in the folder, or null. */
    static Path findFile(Path folder, String split, String kind) {
        for (String suffix : new String[]{"", ".gz"}) {
            Path file = folder.resolve(split + "-" + kind + "-ubyte" + suffix);
            if (Files.isRegularFile(file)) {
                return file;
            }
        }
        return null;
    }
}
