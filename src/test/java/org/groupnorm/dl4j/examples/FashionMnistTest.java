package org.groupnorm.dl4j.examples;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import org.groupnorm.dl4j.examples.support.FashionMnist;
import org.groupnorm.dl4j.examples.support.IdxFile;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.dataset.DataSet;

/** The embedded Fashion-MNIST subset loads as documented, stratified selection works, and bad folders are named. */
class FashionMnistTest {

    private static final Path EMBEDDED = Paths.get(FashionMnist.EMBEDDED_FOLDER);

    @TempDir
    Path dir;

    @Test
    void examplesTakeTheDataFolderAsDashDashData() {
        assertEquals(EMBEDDED.toAbsolutePath().normalize(),
                FashionMnist.fromArgs("--data", EMBEDDED.toString()).folder().toAbsolutePath().normalize());
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> FashionMnist.fromArgs(EMBEDDED.toString()));
        assertTrue(e.getMessage().startsWith("usage: [--data DIR]"), e.getMessage());
    }

    @Test
    void embeddedSubsetHoldsTenThousandTrainingAndTwoThousandTestImagesBalanced() {
        FashionMnist data = FashionMnist.locate(EMBEDDED);
        assertTrue(data.isEmbeddedSubset());
        DataSet train = data.train(0);
        DataSet test = data.test(0);
        assertArrayEquals(new long[]{10_000, 1, 28, 28}, train.getFeatures().shape());
        assertArrayEquals(new long[]{2_000, 10}, test.getLabels().shape());
        assertArrayEquals(new double[]{1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000},
                train.getLabels().sum(0).toDoubleVector(), 0.0);
        assertArrayEquals(new double[]{200, 200, 200, 200, 200, 200, 200, 200, 200, 200},
                test.getLabels().sum(0).toDoubleVector(), 0.0);
        // Pixels scaled to [0, 1]; Fashion-MNIST's published mean pixel intensity is 0.286.
        INDArray x = train.getFeatures();
        assertEquals(0.0, x.minNumber().doubleValue(), 0.0);
        assertEquals(1.0, x.maxNumber().doubleValue(), 0.0);
        assertEquals(0.286, x.meanNumber().doubleValue(), 0.01);
    }

    @Test
    void perClassSelectionIsStratifiedAndTakesTheFirstOfEachClass() {
        FashionMnist data = FashionMnist.locate(EMBEDDED);
        DataSet few = data.train(5);
        assertEquals(50, few.numExamples());
        assertArrayEquals(new double[]{5, 5, 5, 5, 5, 5, 5, 5, 5, 5}, few.getLabels().sum(0).toDoubleVector(), 0.0);
        // The first example of the subset is the first of the whole set, whatever its class.
        assertEquals(data.train(0).getFeatures().slice(0), few.getFeatures().slice(0));
    }

    @Test
    void embeddedSubsetIsTheFirstImagesOfEachClassOfTheFullSet() {
        Path full = Paths.get(FashionMnist.SYSTEM_FOLDER);
        assumeTrue(Files.isDirectory(full), "needs Debian's dataset-fashion-mnist package");
        FashionMnist subset = FashionMnist.locate(EMBEDDED);
        FashionMnist original = FashionMnist.locate(full);
        assertEquals(original.train(1000).getFeatures(), subset.train(0).getFeatures());
        assertEquals(original.test(200).getLabels(), subset.test(0).getLabels());
    }

    @Test
    void folderWithoutTheFilesNamesWhatIsMissing() {
        IdxFile.DataFileException e = assertThrows(IdxFile.DataFileException.class, () -> FashionMnist.locate(dir));
        assertTrue(e.getMessage().contains("train-images-idx3-ubyte") && e.getMessage().contains(dir.toString()),
                e.getMessage());
    }

    @Test
    void corruptImageFileIsNamedWhenLoading() throws IOException {
        for (String name : new String[]{"train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                "t10k-labels-idx1-ubyte.gz"}) {
            Files.copy(EMBEDDED.resolve(name), dir.resolve(name));
        }
        byte[] images = Files.readAllBytes(EMBEDDED.resolve("train-images-idx3-ubyte.gz"));
        Files.write(dir.resolve("train-images-idx3-ubyte.gz"), java.util.Arrays.copyOf(images, images.length / 2));
        FashionMnist data = FashionMnist.locate(dir);
        RuntimeException e = assertThrows(IdxFile.DataFileException.class, () -> data.train(0));
        assertTrue(e.getMessage().contains("train-images-idx3-ubyte.gz"), e.getMessage());
    }

    @Test
    void imageAndLabelCountsMustAgree() throws IOException {
        for (String name : new String[]{"train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                "t10k-labels-idx1-ubyte.gz"}) {
            Files.copy(EMBEDDED.resolve(name), dir.resolve(name));
        }
        IdxFile.write(dir.resolve("train-labels-idx1-ubyte"), new int[]{7}, new byte[7]);
        IdxFile.DataFileException e = assertThrows(IdxFile.DataFileException.class,
                () -> FashionMnist.locate(dir).train(0));
        assertTrue(e.getMessage().contains("10000 images") && e.getMessage().contains("7 labels"), e.getMessage());
    }
}
