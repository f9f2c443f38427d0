using System.Runtime.InteropServices;
using System.Text.Json;
using Onnx;

namespace EdgeNode.Shared.Tests.Inference.Synthesis;

/// <summary>
/// A direct, loop-by-loop GPT-2 forward pass in double precision over the initializers of a synthesized FP32 file,
/// written from Hugging Face <c>modeling_gpt2.py</c> (eager attention) and independent of the ONNX graph: the oracle
/// that the graph computes standard GPT-2.
/// </summary>
internal sealed class Gpt2Reference
{
    private readonly Dictionary<string, float[]> _weights;
    private readonly int _e;
    private readonly int _layers;
    private readonly int _heads;
    private readonly int _vocab;

    public Gpt2Reference(byte[] fp32Model)
    {
        ModelProto model = ModelProto.Parser.ParseFrom(fp32Model);
        _weights = model.Graph.Initializer
            .Where(t => t.DataType == (int)TensorProto.Types.DataType.Float)
            .ToDictionary(t => t.Name, t => MemoryMarshal.Cast<byte, float>(t.RawData.Span).ToArray());
        using JsonDocument config = JsonDocument.Parse(model.MetadataProps.Single(p => p.Key == "config").Value);
        _e = config.RootElement.GetProperty("n_embd").GetInt32();
        _layers = config.RootElement.GetProperty("n_layer").GetInt32();
        _heads = config.RootElement.GetProperty("n_head").GetInt32();
        _vocab = config.RootElement.GetProperty("vocab_size").GetInt32();
    }

    /// <summary>Logits [S, V] for one unpadded sequence starting at position 0.</summary>
    public double[][] Logits(IReadOnlyList<long> tokens)
    {
        int s = tokens.Count;
        int d = _e / _heads;
        float[] wte = _weights["transformer.wte.weight"];
        float[] wpe = _weights["transformer.wpe.weight"];
        var h = new double[s][];
        for (int t = 0; t < s; t++)
        {
            h[t] = new double[_e];
            for (int k = 0; k < _e; k++)
            {
                h[t][k] = wte[(tokens[t] * _e) + k] + (double)wpe[(t * _e) + k];
            }
        }

        for (int layer = 0; layer < _layers; layer++)
        {
            string p = $"transformer.h.{layer}";
            double[][] x = h.Select(row => LayerNorm(row, $"{p}.ln_1")).ToArray();
            double[][] qkv = x.Select(row => Linear(row, $"{p}.attn.c_attn", 3 * _e)).ToArray();
            var context = new double[s][];
            for (int t = 0; t < s; t++)
            {
                context[t] = new double[_e];
            }

            for (int head = 0; head < _heads; head++)
            {
                for (int query = 0; query < s; query++)
                {
                    // Causal: query may see keys 0..query.
                    var scores = new double[query + 1];
                    for (int key = 0; key <= query; key++)
                    {
                        double dot = 0;
                        for (int k = 0; k < d; k++)
                        {
                            dot += qkv[query][(head * d) + k] * qkv[key][_e + (head * d) + k];
                        }

                        scores[key] = dot / Math.Sqrt(d);
                    }

                    double max = scores.Max();
                    double[] weights = scores.Select(v => Math.Exp(v - max)).ToArray();
                    double sum = weights.Sum();
                    for (int key = 0; key <= query; key++)
                    {
                        for (int k = 0; k < d; k++)
                        {
                            context[query][(head * d) + k] += weights[key] / sum * qkv[key][(2 * _e) + (head * d) + k];
                        }
                    }
                }
            }

            for (int t = 0; t < s; t++)
            {
                double[] attention = Linear(context[t], $"{p}.attn.c_proj", _e);
                double[] residual = h[t].Zip(attention, (a, b) => a + b).ToArray();
                double[] fc = Linear(LayerNorm(residual, $"{p}.ln_2"), $"{p}.mlp.c_fc", 4 * _e).Select(GeluNew).ToArray();
                double[] mlp = Linear(fc, $"{p}.mlp.c_proj", _e);
                h[t] = residual.Zip(mlp, (a, b) => a + b).ToArray();
            }
        }

        var logits = new double[s][];
        for (int t = 0; t < s; t++)
        {
            double[] final = LayerNorm(h[t], "transformer.ln_f");
            logits[t] = new double[_vocab];
            for (int v = 0; v < _vocab; v++)
            {
                double dot = 0;
                for (int k = 0; k < _e; k++)
                {
                    dot += final[k] * wte[(v * _e) + k];
                }

                logits[t][v] = dot;
            }
        }

        return logits;
    }

    private static double GeluNew(double x) =>
        0.5 * x * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (x + (0.044715 * x * x * x))));

    private double[] LayerNorm(double[] x, string name)
    {
        float[] gamma = _weights[$"{name}.weight"];
        float[] beta = _weights[$"{name}.bias"];
        double mean = x.Average();
        double variance = x.Select(v => (v - mean) * (v - mean)).Average();
        double inv = 1 / Math.Sqrt(variance + 1e-5);
        return x.Select((v, i) => ((v - mean) * inv * gamma[i]) + beta[i]).ToArray();
    }

    /// <summary>y = x · W + b with W in Conv1D [in, out] layout.</summary>
    private double[] Linear(double[] x, string name, int outputs)
    {
        float[] w = _weights[$"{name}.weight"];
        float[] b = _weights[$"{name}.bias"];
        var y = new double[outputs];
        for (int o = 0; o < outputs; o++)
        {
            y[o] = b[o];
        }

        for (int i = 0; i < x.Length; i++)
        {
            double xi = x[i];
            int row = i * outputs;
            for (int o = 0; o < outputs; o++)
            {
                y[o] += xi * w[row + o];
            }
        }

        return y;
    }
}
