import glob
import os

import pytest

from config import Config, ConfigError, from_dict, load_config, to_dict, valid_keys


def test_defaults_are_shapes():
    cfg = load_config()
    assert isinstance(cfg, Config) and cfg.data.name == "shapes" and cfg.data.captions_per_image == 5


def test_preset_then_overrides(tmp_path):
    preset = tmp_path / "p.yaml"
    preset.write_text("data:\n  batch_size: 7\n  shapes:\n    n_train: 11\n")
    cfg = load_config(str(preset), ["data.shapes.n_train=13", "data.use_restval=true"])
    assert cfg.data.batch_size == 7 and cfg.data.shapes.n_train == 13 and cfg.data.use_restval is True


def test_unknown_override_lists_valid_keys():
    with pytest.raises(ConfigError) as err:
        load_config(None, ["data.batchsize=3"])
    assert "data.batchsize" in str(err.value) and "data.batch_size" in str(err.value)


def test_unknown_key_in_preset_names_file(tmp_path):
    preset = tmp_path / "p.yaml"
    preset.write_text("data:\n  colour: red\n")
    with pytest.raises(ConfigError, match=r"p.yaml: unknown key 'data.colour'"):
        load_config(str(preset))


def test_wrong_type_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="data.batch_size"):
        load_config(None, ["data.batch_size=many"])
    preset = tmp_path / "p.yaml"
    preset.write_text("data:\n  use_restval: maybe\n")
    with pytest.raises(ConfigError, match="use_restval"):
        load_config(str(preset))


def test_malformed_inputs(tmp_path):
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["data.batch_size"])
    with pytest.raises(ConfigError, match="not found"):
        load_config(str(tmp_path / "none.yaml"))
    with pytest.raises(ConfigError, match="is a section"):
        load_config(None, ["data.shapes=1"])


def test_dict_roundtrip_and_shipped_presets():
    cfg = load_config(None, ["data.image_size=32"])
    assert from_dict(to_dict(cfg)) == cfg
    assert "data.shapes.n_train" in valid_keys()
    presets = glob.glob(os.path.join(os.path.dirname(__file__), "..", "configs", "*.yaml"))
    assert len(presets) >= 5
    for path in presets:
        load_config(path)


def test_a_run_saved_before_small_cnn_depth_existed_loads_with_the_depth_it_had():
    saved = to_dict(load_config(None, ["model.small_cnn_depth=3"]))
    assert from_dict(saved).model.small_cnn_depth == 3  # a saved value is kept
    del saved["model"]["small_cnn_depth"]
    assert from_dict(saved).model.small_cnn_depth == 1  # not today's default
    assert "small_cnn_depth" not in saved["model"]  # the caller's dict is left alone


def test_a_run_saved_before_standardise_text_existed_reads_its_text_raw():
    saved = to_dict(load_config(None, []))
    assert from_dict(saved).imagine.standardise_text is True  # today's default, kept when saved
    del saved["imagine"]["standardise_text"]
    assert from_dict(saved).imagine.standardise_text is False


def test_a_run_saved_before_the_gan_alone_phase_existed_had_none():
    saved = to_dict(load_config(None, ["imagine.solo_steps=7"]))
    assert from_dict(saved).imagine.solo_steps == 7
    del saved["imagine"]["solo_steps"]
    assert from_dict(saved).imagine.solo_steps == 0


def test_a_run_saved_before_the_generators_average_existed_had_none():
    saved = to_dict(load_config(None, []))
    assert from_dict(saved).imagine.ema == 0.999  # today's Shapes default, kept when saved
    del saved["imagine"]["ema"]
    assert from_dict(saved).imagine.ema == 0.0  # such a checkpoint has no imagine_ema weights to load
    saved = to_dict(load_config(None, []))
    del saved["imagine"]["solo_diff_augment"]
    assert from_dict(saved).imagine.solo_diff_augment == ""  # its GAN-alone phase augmented nothing


def test_shapes_preset_spells_out_the_defaults():
    preset = os.path.join(os.path.dirname(__file__), "..", "configs", "shapes.yaml")
    assert load_config(preset) == load_config()
