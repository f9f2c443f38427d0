using System.Text;
using System.Text.Json;

namespace EdgeNode.Shared.Inference.Synthesis;

/// <summary>
/// The GPT2Config fields that shape the graph, for one <see cref="ModelPreset"/>. Field meanings follow Hugging Face
/// <c>transformers.GPT2Config</c> (https://huggingface.co/docs/transformers/model_doc/gpt2#transformers.GPT2Config).
/// </summary>
/// <param name="VocabSize">vocab_size: 50257, the GPT-2 BPE vocabulary.</param>
/// <param name="Positions">n_positions: 1024, the context length in tokens (prompt + new tokens).</param>
/// <param name="Embedding">n_embd (E).</param>
/// <param name="Layers">n_layer (L).</param>
/// <param name="Heads">n_head (H); head_dim = E / H.</param>
internal sealed record Gpt2Hyperparameters(int VocabSize, int Positions, int Embedding, int Layers, int Heads)
{
    /// <summary>Token id of <c>&lt;|endoftext|&gt;</c>, GPT-2's bos and eos.</summary>
    public const int EndOfTextTokenId = 50256;

    /// <summary>layer_norm_epsilon of GPT-2.</summary>
    public const float LayerNormEpsilon = 1e-5f;

    /// <summary>head_dim (D) = n_embd / n_head.</summary>
    public int HeadDim => Embedding / Heads;

    /// <summary>MLP inner width: n_inner is null in the config, which means 4 · n_embd.</summary>
    public int Inner => 4 * Embedding;

    /// <summary>The sizes of <paramref name="preset"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">An undefined preset.</exception>
    public static Gpt2Hyperparameters For(ModelPreset preset) => preset switch
    {
        ModelPreset.Tiny => new Gpt2Hyperparameters(50257, 1024, 64, 2, 2),
        ModelPreset.Small => new Gpt2Hyperparameters(50257, 1024, 768, 12, 12),
        _ => throw new ArgumentOutOfRangeException(nameof(preset), preset, "Preset must be Tiny or Small."),
    };

    /// <summary>
    /// The GPT2Config as Hugging Face writes it in <c>config.json</c> (keys sorted, as <c>to_json_string</c> does),
    /// stored in the model's <c>metadata_props["config"]</c>. Line ends are "\n" on every OS so the bytes are the same everywhere.
    /// </summary>
    public string ToConfigJson()
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true, IndentSize = 2, NewLine = "\n" }))
        {
            w.WriteStartObject();
            w.WriteString("activation_function", "gelu_new");
            w.WriteStartArray("architectures");
            w.WriteStringValue("GPT2LMHeadModel");
            w.WriteEndArray();
            w.WritePropertyName("attn_pdrop");
            w.WriteRawValue("0.1");
            w.WriteNumber("bos_token_id", EndOfTextTokenId);
            w.WritePropertyName("embd_pdrop");
            w.WriteRawValue("0.1");
            w.WriteNumber("eos_token_id", EndOfTextTokenId);
            w.WritePropertyName("initializer_range");
            w.WriteRawValue("0.02");
            w.WritePropertyName("layer_norm_epsilon");
            w.WriteRawValue("1e-05");
            w.WriteString("model_type", "gpt2");
            w.WriteNumber("n_ctx", Positions);
            w.WriteNumber("n_embd", Embedding);
            w.WriteNumber("n_head", Heads);
            w.WriteNull("n_inner");
            w.WriteNumber("n_layer", Layers);
            w.WriteNumber("n_positions", Positions);
            w.WriteBoolean("reorder_and_upcast_attn", false);
            w.WritePropertyName("resid_pdrop");
            w.WriteRawValue("0.1");
            w.WriteBoolean("scale_attn_by_inverse_layer_idx", false);
            w.WriteBoolean("scale_attn_weights", true);
            w.WriteNull("summary_activation");
            w.WriteBoolean("summary_first_dropout", true);
            w.WriteBoolean("summary_proj_to_labels", true);
            w.WriteString("summary_type", "cls_index");
            w.WriteBoolean("summary_use_proj", true);
            w.WriteString("torch_dtype", "float32");
            w.WriteBoolean("use_cache", true);
            w.WriteNumber("vocab_size", VocabSize);
            w.WriteEndObject();
        }

        return Encoding.UTF8.GetString(buffer.GetBuffer(), 0, (int)buffer.Length);
    }
}
