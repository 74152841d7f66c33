"""`python -m kaggle_kit.train …` = `kit train …`; the entry torchrun / accelerate launch use for DDP:

    torchrun --nproc_per_node 2 -m kaggle_kit.train --config kit.toml
"""
from kaggle_kit.cli.train import train

if __name__ == "__main__":
    train(prog_name="kit train")
