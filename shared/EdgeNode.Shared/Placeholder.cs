namespace EdgeNode.Shared; internal static class Placeholder { }
