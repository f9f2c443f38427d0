namespace EdgeNode.TestSupport; public static class Placeholder { }
