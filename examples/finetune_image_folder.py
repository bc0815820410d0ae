r"""Fine-tune an ImageNet backbone with CRL on your own image folder.

One sub-folder per class (CUB-200-2011, Stanford Cars, Adience, or your own):

    data/birds/001.Black_footed_Albatross/*.jpg
    data/birds/002.Laysan_Albatross/*.jpg
    ...

    python examples/finetune_image_folder.py data/birds                       # pretrained ResNet-50
    python examples/finetune_image_folder.py data/birds --model keras_app_mobilenet_v2 \
        --image-size 160

Stage 1 trains only the new head on the frozen backbone; stage 2 fine-tunes
everything at a tenth of the learning rate, from stage 1's weights.
`--weights none` starts from scratch (no download).
"""

import argparse
from pathlib import Path

from keras_crl.train import TrainConfig
from keras_crl.train import train

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("folder")
parser.add_argument("--model", default="keras_app_resnet50")
parser.add_argument("--weights", default="imagenet", help="imagenet or none")
parser.add_argument("--image-size", type=int, default=224)
parser.add_argument("--epochs", type=int, default=30)
parser.add_argument("--batch-size", type=int, default=32)
parser.add_argument("--lr", type=float, default=0.01)
parser.add_argument("--run-dir", default="runs/finetune")
args = parser.parse_args()

weights = None if args.weights == "none" else args.weights
common = dict(
    model=args.model,
    dataset="folder",
    loss="crl",
    beta=0.25,
    recipe="cosine",
    batch_size=args.batch_size,
    dataset_options={"path": args.folder, "image_size": (args.image_size, args.image_size)},
    verbose=2,
)
head = train(
    TrainConfig(
        **common,
        epochs=max(1, args.epochs // 3),
        learning_rate=args.lr,
        model_options={"weights": weights, "freeze_backbone": True},
        run_dir=str(Path(args.run_dir) / "head"),
    )
)
full = train(
    TrainConfig(
        **common,
        epochs=args.epochs,
        learning_rate=args.lr / 10,
        init_weights=str(Path(args.run_dir) / "head" / "best.weights.h5"),
        run_dir=str(Path(args.run_dir) / "full"),
    )
)
print(
    f"test accuracy: head only {100 * head['test_accuracy']:.2f} %, "
    f"fine-tuned {100 * full['test_accuracy']:.2f} %"
)
