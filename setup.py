from setuptools import setup

setup(
    name="lim",
    version="0.1.0",
    description="Look, Imagine and Match: image-text matching with a caption decoder and a text-to-image GAN",
    python_requires=">=3.9",
    # The scripts run from the checkout (python train.py, python -m data check), as nanoGPT's do:
    # `pip install -e .` installs the dependencies only, so our generic top-level names (config,
    # data, models, train, evaluate, ...) never land in site-packages, where `evaluate` would shadow
    # the well-known package of that name.
    py_modules=[],
    packages=[],
    install_requires=[
        "torch>=2.1",
        "torchvision>=0.16",
        "numpy",
        "pillow",
        "omegaconf>=2.3",
        "pyyaml",
        "tqdm",
        "h5py",
        "tensorboard",
        "nltk",
        "pycocoevalcap",
        "numba",
        "matplotlib",
        "scipy",
    ],
    # fid: the published FID/IS (evaluate.py --inception-weights); the weights file is still the user's.
    # The tests run that path too, on random weights they make themselves.
    # icons: the SVG renderer of `python -m data build-icons` (it needs the system's libcairo).
    # faiss: the approximate shortlist of `demo.py index --ann` (own-collection search).
    extras_require={"test": ["pytest>=7", "torch-fidelity>=0.3", "selenium>=4.10", "cairosvg>=2.5", "faiss-cpu>=1.7"],
                    "fid": ["torch-fidelity>=0.3"], "icons": ["cairosvg>=2.5"], "faiss": ["faiss-cpu>=1.7"]},
)
