Console.WriteLine("edgenode");
