"""The configuration tree: one dataclass per section, with every key's default and meaning, and
the fixed sets some keys choose from (the modules that implement each choice import them here)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


class ConfigError(ValueError):
    """A bad preset file, override or value; the message names the key or file."""


DATASET_KINDS = ("shapes", "karpathy", "precomp", "h5")  # data.name
BACKBONES = ("small_cnn", "resnet18", "resnet34", "resnet50", "resnet152", "vgg19", "precomp")  # model.image_encoder
MEASURES = ("order", "cosine")  # model.measure
SCST_BASELINES = ("mean", "greedy")  # look.scst_baseline
GAN_IMAGE_SIZES = (32, 64, 128)  # imagine.image_size
REWARDS = ("retrieval", "similarity", "margin", "clip_s")  # semi.reward
STAGE2_PICKS = ("cider", "last")  # semi.pick
SCHEDULES = ("joint", "sequential")  # train.schedule
LR_SCHEDULES = ("step", "cosine")  # train.lr_schedule
GAN_LOSSES = ("bce", "hinge")  # imagine.adv_loss
GAN_FUSIONS = ("input", "affine")  # imagine.fusion
DIFF_AUGMENT = ("translation", "cutout")  # imagine.diff_augment policies


@dataclass
class ShapesConfig:
    """The built-in Shapes set (generated once, then cached)."""

    n_train: int = 10000
    n_val: int = 1000
    n_test: int = 1000
    seed: int = 0
    max_objects: int = 3


@dataclass
class DataConfig:
    """Where the images and captions come from and how they are batched."""

    # shapes | karpathy | precomp (VSE++ {split}_ims.npy + {split}_caps.txt) | h5 (our extractor)
    name: str = "shapes"
    json: Optional[str] = None  # karpathy: dataset_coco.json or any file in that schema
    image_root: Optional[str] = None  # karpathy: images are image_root/filepath/filename
    precomp_dir: Optional[str] = None  # precomp: folder with {split}_ims.npy, {split}_caps.txt
    h5: Optional[str] = None  # h5: feature file written by `python -m data extract`
    use_restval: bool = False  # karpathy: the restval split joins train (COCO's 113K train)
    image_size: int = 64  # side of the square crop the image encoder sees
    resize: int = 0  # shorter side before cropping; 0 means image_size (no crop margin)
    augment: bool = False  # random crop (and flip when flip=true) for training images
    flip: bool = False  # horizontal flips break "left of" captions: off unless asked for
    captions_per_image: int = 5  # the protocol groups captions 5 per image
    vocab_threshold: int = 1  # words seen fewer times in train become <unk>
    max_caption_len: int = 50  # tokens kept per caption (before <start>/<end>)
    batch_size: int = 128
    num_workers: int = 0  # Shapes lives in memory; use 4+ for image files
    # Training images from files are decoded and resized (data.resize) once and kept in memory as
    # uint8 when they fit in this many MB (0: never); each epoch's crops and flips are then cut from
    # memory instead of decoding every file again (an icon set of 2,500 72 px images: 39 MB).
    cache_mb: int = 1024
    cache_dir: str = ""  # empty: $LIM_CACHE or ~/.cache/lim
    # Replace this fraction of training captions with captions of other images (a known set of wrong
    # pairs to measure their detection; recorded in the run folder's wrong_pairs.json).
    wrong_fraction: float = 0.0
    wrong_seed: int = 0
    # Semi-supervised captioning: keep the captions of this fraction of training images only
    # (chosen deterministically in labelled_seed, recorded in labelled_images.json); the matcher,
    # decoder and GAN see captions only there, and an epoch repeats them to its full length.
    labelled_fraction: float = 1.0
    labelled_seed: int = 0
    shapes: ShapesConfig = field(default_factory=ShapesConfig)


@dataclass
class ModelConfig:
    """Encoders and the similarity measure (docs/DESIGN.md section 2)."""

    # small_cnn (64 px data, from scratch) | resnet18|34|50|152 | vgg19 | precomp (feature projector)
    image_encoder: str = "small_cnn"
    cnn_weights: Optional[str] = None  # local torchvision state dict; nothing is downloaded
    finetune: bool = True  # train the backbone too (false: frozen; a torchvision CNN, or one from image_init)
    # Another run's folder whose image encoder (backbone and both heads, from its best.pt) starts ours:
    # a matcher trained on more pairs, the role a pretrained image tower (CLIP's) plays for a captioner
    # with few labels. Its encoder settings and input size must be ours. Empty: from scratch.
    image_init: str = ""
    small_cnn_width: int = 32  # channels of the first small_cnn block (doubles per block)
    # Convs per small_cnn block (the first strided, the rest 3x3 stride 1). 2 on Shapes: 3 seeds of the
    # default run, test rsum and shape binding well above depth 1's (README); the presets for other
    # small-CNN data keep 1 (on a real icon set depth 2 learned slower at 60% of the speed).
    small_cnn_depth: int = 2
    # Defaults are sized for Shapes on a laptop; the COCO/Flickr30k presets use the paper's sizes.
    embed_dim: int = 512
    # While training, each word of a caption the text encoder reads becomes <unk> with this probability
    # (the decoder's inputs and targets keep theirs): practice for test captions whose words were never
    # seen in training (0: off).
    word_dropout: float = 0.0
    word_dim: int = 300
    text_hidden: int = 128  # per direction of the 2-layer bidirectional GRU
    text_layers: int = 2
    measure: str = "order"  # order (Vendrov, squared) | cosine
    abstract_weight: float = 0.5  # pair similarity = weighted sum over the two branches
    grounded_weight: float = 0.5
    # Modality-invariant embedding: weight of a modality classifier's loss behind gradient reversal
    # (the reversal's scale ramps 0 -> 1 over training); 0 switches it off.
    invariant_weight: float = 0.0
    invariant_hidden: int = 64
    # Conv weights (image encoder, generator, discriminator) and so their activations in channels-last
    # memory format: oneDNN's faster layout on CPU (benchmarks/bench_train.py: the training step 1.06-1.09x
    # on 2 cores). Values are the same up to float rounding; false reproduces runs from before
    # 2026-12-04 to the digit (on the same thread count).
    channels_last: bool = True


@dataclass
class LossConfig:
    """The bidirectional hinge ranking loss."""

    margin: float = 0.05  # 0.05 for order, 0.2 for cosine
    max_violation: bool = True  # hardest negative per query (VSE++) once warm-up is over
    warmup_epochs: int = 4  # epochs of the sum form first (hardest-negative cold starts collapse)
    # Epochs over which the hardest form ramps in after warm-up, step by step, through sums over the
    # hardest k negatives with k shrinking from all to 1 (losses/ranking.py aggregate_negatives).
    # 0: the hardest form switches on at once, which can collapse val rsum on real images.
    hard_ramp_epochs: int = 0
    # Where that ramp ends: 1 is the hardest negative; below 1, each query keeps the sum of its
    # batch_size ** (1 - value) largest hinges (0.5 with a batch of 128: the hardest 11), a
    # semi-hard form that near-duplicate negatives (one icon's variants) cannot rule alone.
    hard_weight_max: float = 1.0
    # Each query's term is the mean of the negatives it keeps instead of their sum, so the ranking
    # loss keeps its scale through the ramp and the look/imagine weights mean the same all along
    # (with the sum, the ranking term shrinks ~batch-size-fold when the hardest form takes over).
    mean_negatives: bool = False
    # Adaptive hard negatives: a queue of this many recent (detached) image and caption embeddings
    # joins every batch's candidates, so the hardest negative is mined from a pool that grows
    # harder as the embedding improves (0: off, in-batch negatives only). The queue fills during the
    # warm-up but joins only when the hardest form begins (in the sum form it swamps the batch).
    mined_negatives: int = 0
    # Generated hard negatives (Suris et al., CVPR 2019): each caption with one colour, shape, size or
    # relation word swapped is a negative for its image, hinge-ranked below the true caption with this
    # weight (0: off), from epoch contrast_start_epoch on (a curriculum: easy negatives first). On for
    # Shapes, whose words these are (3 seeds: test rsum 354.3 vs 342.8 without, attribute binding
    # 57.5% vs 51.7%; README); the presets for other data switch it off.
    contrast_weight: float = 0.6
    contrast_start_epoch: int = 0  # also when imagined negatives start
    # The generator's image of each swapped caption as a negative for the original caption (caption
    # as query), hinge-weighted by this (0: off; needs the GAN), on the first imagined_pairs pairs.
    imagined_weight: float = 0.0
    imagined_pairs: int = 24
    # After the GAN-alone phase, this many more matcher steps from best.pt with the generator and the
    # decoder frozen, imagined negatives drawn by the finished generator weighted polish_imagined_weight
    # (0: the same steps without them); training/polish.py (0: no such phase). Shapes, 3 seeds, 78
    # steps: shape swaps as without the imagined negatives, test rsum 2.7 lower (README "Beyond LIM").
    polish_steps: int = 0
    polish_imagined_weight: float = 1.0


@dataclass
class RobustConfig:
    """Training on pairs some of which are wrong, without labels (noisy correspondence)."""

    # Each epoch after warmup_epochs, fit a two-component mixture to the training pairs' recorded
    # ranking losses (always in the sum-over-negatives form, so the scale does not jump when
    # hardest negatives start) and weight every pair's ranking, decoder and GAN-matching terms by
    # its clean probability (the small-loss component's posterior). Weighting should start before
    # loss.warmup_epochs ends: hardest negatives on unweighted noisy pairs can collapse training.
    enabled: bool = False
    warmup_epochs: int = 2


@dataclass
class SemiConfig:
    """Stage 2 of semi-supervised captioning: after training, SCST of the decoder on the unlabelled
    training images (every training image when all are labelled), rewarded by the frozen matcher."""

    stage2_epochs: int = 0  # passes over the unlabelled images (0: off)
    # Which stage-2 epoch's decoder stage2.pt keeps: last, the last epoch's; cider, the one with the
    # best val CIDEr-D (first 500 val images, as self-critical.pytorch keeps its best checkpoint). On
    # Shapes (2% labels, 3 seeds) the last epoch scored as well or better on test CIDEr and
    # distinctiveness than the val pick (README "Semi-supervised captioning"): last is the default.
    pick: str = "last"
    # retrieval: log-probability that the sampled caption retrieves its own image among the batch's
    # images (softmax of the similarities / temperature); it rewards captions that tell images
    # apart. similarity: the raw matcher score, which an order embedding gives generic captions too.
    # margin: the raw score minus the caption's mean score with the batch's other images. clip_s: a
    # CLIP-S-style reference-free score, 2.5 x max(cosine of image and caption, 0).
    reward: str = "retrieval"
    # Another run's folder whose frozen matcher gives the reward instead of ours (one trained on more
    # pairs: the role CLIP plays); our words are mapped onto its vocabulary. Empty: our own matcher.
    reward_run: str = ""
    # A run whose matcher grades the report's semi block (distinctiveness, reference-free score),
    # never the reward: it must differ from reward_run. Empty: no independent grade.
    evaluator_run: str = ""
    temperature: float = 0.01
    similarity_weight: float = 1.0  # weight of the matcher's reward (unlabelled and labelled images)
    cider_weight: float = 1.0  # weight of CIDEr-D in the reward of the labelled images' samples
    fluency_weight: float = 1.0  # decoder cross-entropy on labelled captions: the guard against word salad
    labelled_batch: int = 32  # labelled images joined to every stage-2 step
    lr: float = 5e-5
    batch_size: int = 128  # unlabelled images per step


@dataclass
class LookConfig:
    """The caption decoder ("look": image -> text) on the image's grounded embedding."""

    lambda_i2t: float = 1.0  # weight of the decoder's loss in the joint objective; 0 switches it off
    word_dim: int = 300
    hidden: int = 256  # LSTM units (Shapes; the COCO/Flickr30k presets use 512)
    dropout: float = 0.5
    max_len: int = 20  # tokens generated at most (before <end>)
    lr: float = 5e-4  # decoder learning rate in the cross-entropy phase
    scst_epochs: int = 2  # the last this-many epochs use SCST (0: XE only; the first epoch is always XE)
    scst_lr: float = 5e-5  # about a tenth of the XE rate (Rennie et al.)
    scst_samples: int = 4  # sampled captions per image
    scst_baseline: str = "mean"  # mean (of the other samples; "new self-critical") | greedy
    temperature: float = 1.0  # sampling temperature in SCST
    beam_size: int = 3  # decoding for evaluation and the caption demo
    # Decoding: of the beam_size finished beams, keep the one the matcher scores highest with the
    # image (discriminative decoding; on real images the most likely beam tends to be one generic
    # caption for many images) instead of the most likely one.
    rerank_captions: bool = False
    # With rerank_captions, also this many captions sampled per image (at rerank_temperature) join
    # the beams as candidates: beams alone are near-copies of one generic caption.
    rerank_samples: int = 0
    rerank_temperature: float = 0.7
    rerank_fluency_weight: float = 1.0  # the decoder's mean log-likelihood's share of a candidate's score
    # METEOR in the end-of-training report (its Java scorer takes ~15 s to start; evaluate.py always runs it).
    meteor: bool = True
    # The end-of-training report also re-ranks each test query's top K by the fused pair score
    # (embedding + the decoder's caption likelihood, weight picked on val), as evaluate.py --rerank K
    # does (0: off).
    fused_top_k: int = 0
    # The fused score's image-to-text side takes out each caption's prior: its log-likelihood less
    # its mean over its own top-K images (README "Fused pair scores"); false: the raw likelihood.
    fused_caption_prior: bool = True
    # Val captions (val CIDEr-D in the log and TensorBoard) are decoded every this many epochs and
    # after the last one (0: after the last only); with beams and re-ranking they can cost a
    # sizeable share of an epoch. Val rsum, which picks the best checkpoint, is measured every epoch.
    val_caption_every: int = 1


@dataclass
class ImagineConfig:
    """The text-to-image GAN ("imagine": caption -> image) on the caption's grounded embedding."""

    lambda_t2i: float = 1.0  # weight of G's loss (adversarial + KL) in the joint objective; 0 switches it off
    image_size: int = 64  # 32 | 64 | 128; real images are resized to it for the discriminator
    c_dim: int = 128  # conditioning augmentation output
    # The conditioning augmentation reads the caption's feature standardised (zero mean, unit variance
    # over its dimensions). Read raw, a unit-norm feature gives a condition drowned in the CA's noise
    # (Shapes, GAN trained alone on a frozen encoder, 1,200 steps: named colour dominant 25.6% raw,
    # 63.1% scaled; README). Runs saved before the key read it raw.
    standardise_text: bool = True
    z_dim: int = 100
    # StackGAN uses 64; 16 keeps the default Shapes run within its budget on 2 CPU cores.
    g_width: int = 16
    d_width: int = 16
    kl_weight: float = 2.0
    # Weight of the DAMSM-style loss asking the (frozen) matcher to find each generated image closest
    # to its own caption (0: off, pure StackGAN); it makes the GAN follow colours and shapes much sooner.
    # 3 with the standardised text (Shapes, 3 seeds: named colour dominant 46.2% on the mean, 21-75%
    # per seed, against 12.3% for weight 1 with raw text; README "The generator").
    match_weight: float = 3.0
    # Generated images the matching loss encodes (the first of the GAN's pairs; 0: all of them). The
    # image encoder's pass over them is the path's largest cost on a CPU.
    match_pairs: int = 24
    # The matching loss also holds each generated image against a one-word swap of its caption
    # (colour, shape, size or relation; data/contrast.py, Shapes' words), so G is asked to draw the
    # very word that was swapped, not only what tells its caption from the batch's others. Off: Shapes,
    # GAN-alone phase, seeds 0 and 1, R-precision 32.0 -> 28.4% and 18.1 -> 15.4%, shapes drawn less often
    # (README "Beyond LIM").
    match_swaps: bool = False
    lr: float = 2e-4  # generator (with the CA) and discriminator
    beta1: float = 0.5
    beta2: float = 0.999
    batch_pairs: int = 48  # the first this-many pairs of each batch train the GAN (0: the whole batch)
    interpolate: bool = False  # GAN-INT: G also learns from conditions halfway between two captions
    d_skip_loss: float = 0.01  # skip D's update while its loss is below this (D has won; 0: never skip)
    collapse_ratio: float = 0.1  # warn when generated images vary less than this fraction of real ones
    adv_loss: str = "bce"  # bce (GAN-INT-CLS / StackGAN) | hinge (SN-GAN, DF-GAN)
    spectral_norm: bool = False  # spectral normalisation on every D layer, and no BatchNorm in D
    # Where the condition enters the generator: input (StackGAN: concatenated with the noise) or
    # affine (DF-GAN: also a per-channel scale and shift from it in every upsampling block).
    fusion: str = "input"
    # DiffAugment policies, comma-separated ("translation,cutout"): every image D sees, real or
    # generated, is augmented the same differentiable way (empty: off). No colour policy: the
    # captions name colours.
    diff_augment: str = ""
    # Decay of an exponential moving average of the generator's (and CA's) weights, kept beside it
    # and used for every sample drawn after training (0: off). The GAN-alone phase restarts it from
    # the live generator, warmed up again (decay min(ema, (1 + t) / (10 + t)) at its step t). 0.999
    # since 2026-12-04 (Shapes, that phase redone on seeds 0 and 1: R-precision 32.0 -> 36.8% and
    # 18.1 -> 20.3%, Frechet 0.054 -> 0.049 and 0.078 -> 0.077; README "The generator"). Runs saved
    # before the key had none.
    ema: float = 0.999
    # The GAN (D step, G's terms) joins every this many training steps (1: every step); the steps
    # between train the matcher and the decoder only. The GAN's step costs about three quarters of
    # the matcher's (benchmarks/bench_train.py). 2 on Shapes: it gives back most of what the depth-2
    # image CNN costs, so the 10 epochs take about 1.08x the old default's time (README); the
    # COCO/Flickr30k presets use 1.
    every: int = 2
    # After the joint epochs, this many more steps train the GAN alone on the frozen matcher, starting
    # from (and written back into) best.pt: training/gan_phase.py (0: none). On Shapes the joint epochs
    # give the GAN only 390 updates; 1000 more, 3 seeds: named colour dominant 46.2% -> 67.9% on the
    # mean, R-precision 7.2% -> 19.5% (README "The generator"). 800 since 2026-12-04 (night): the same
    # seed-0 model after 800 and 1000 steps, R-precision 33.7% and 33.0%, Frechet 0.056 and 0.054, in
    # 32 s less. Runs saved before the key had none.
    solo_steps: int = 800
    # DiffAugment policies of the discriminator in the GAN-alone phase, in place of diff_augment there
    # (empty: none). Since 2026-12-04 (late): Shapes, the phase redone on three seeds, seed 2's collapsed
    # generator R-precision 4.9% -> 16.2%, Frechet 0.27 -> 0.12 (README "The generator"). Runs saved
    # before the key had none.
    solo_diff_augment: str = "translation,cutout"


@dataclass
class TrainConfig:
    """Optimisation, run folder and reproducibility."""

    out_dir: str = "runs/shapes"
    seed: int = 0
    epochs: int = 10
    lr: float = 2e-4
    lr_decay_epochs: int = 7  # multiply lr by lr_decay every this many epochs (0: never)
    lr_decay: float = 0.1
    # step: x lr_decay every lr_decay_epochs; cosine: from lr down to lr x lr_decay in the last epoch
    # along half a cosine, one value per epoch (lr_decay_epochs unused)
    lr_schedule: str = "step"
    grad_clip: float = 2.0  # max global grad norm (0: off)
    one_caption_per_image: bool = True  # epoch = one random caption per image (false: all captions)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    resume: bool = False  # continue the run in out_dir from its `last` checkpoint
    eval_batch_size: int = 256
    log_every: int = 20  # TensorBoard scalars every this many steps
    max_steps: int = 0  # stop after this many steps (0: no limit; for smoke tests)
    # joint: D step, then one forward/backward of the summed G + decoder + ranking losses (default,
    # one encoder pass). sequential: the paper's order, D, G, decoder, ranking, each its own
    # forward, backward and optimizer step.
    schedule: str = "joint"


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    look: LookConfig = field(default_factory=LookConfig)
    imagine: ImagineConfig = field(default_factory=ImagineConfig)
    robust: RobustConfig = field(default_factory=RobustConfig)
    semi: SemiConfig = field(default_factory=SemiConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
